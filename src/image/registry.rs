//! Registry client (oci-client): manifests, configs, blob streams, auth.
