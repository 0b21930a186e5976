/* A resident guest for the benchmarks: keeps one task (and so the shim process) alive. */
#include <unistd.h>

int main(void) {
    sleep(3600);
    return 0;
}
