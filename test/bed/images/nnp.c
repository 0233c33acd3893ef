/* nonewprivs stand-in for critest: a setuid-root binary printing its effective uid. */
#include <stdio.h>
#include <unistd.h>

int main(void) { printf("Effective uid: %d\n", geteuid()); return 0; }
