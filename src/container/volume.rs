//! Volumes: parse -v, resolve DST inside the root, bind (ro/rw), clean up.
