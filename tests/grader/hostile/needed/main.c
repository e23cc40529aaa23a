int evil(void);
int main(void) { return evil(); }
