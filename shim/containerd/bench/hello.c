/* The benchmark's WASI hello: what `ctr run --rm` starts and waits for. */
#include <stdio.h>

int main(void) {
    puts("hello from wasm");
    return 0;
}
