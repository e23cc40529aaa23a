int evil(void) { return 0; }
