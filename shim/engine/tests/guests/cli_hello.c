// wasi:cli/run component (wasi-libc `main` + the WASI p1 command adapter).
// Prints "<$GREETING or hello> from a cli component: <args...>" to stdout and "done" to
// stderr. With argv[1] == "fail" it exits with status 3 instead.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "fail") == 0) {
        return 3;
    }
    const char *greeting = getenv("GREETING");
    printf("%s from a cli component:", greeting ? greeting : "hello");
    for (int i = 1; i < argc; i++) {
        printf(" %s", argv[i]);
    }
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "done\n");
    return 0;
}
