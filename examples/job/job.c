/* A batch job as a wasi:cli command: sums the numbers given as arguments (or 1..ITEMS from the
 * environment, default 100), prints one line per 25 items and a summary, and exits 0.
 * A failure (a non-number argument) exits 2, which Kubernetes reports as a failed Job. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long long sum = 0;
    long items = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            char *end;
            long long n = strtoll(argv[i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0') {
                fprintf(stderr, "job: argument %d is not a number: %s\n", i, argv[i]);
                return 2;
            }
            sum += n;
            items++;
        }
    } else {
        const char *env = getenv("ITEMS");
        long n = env ? strtol(env, NULL, 10) : 100;
        for (long i = 1; i <= n; i++) {
            sum += i;
            items++;
            if (i % 25 == 0) printf("job: %ld items so far\n", i);
        }
    }
    printf("job: processed %ld items, sum %lld\n", items, sum);
    return 0;
}
