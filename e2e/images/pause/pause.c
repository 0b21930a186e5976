/*
 * The pod sandbox ("pause") process of the local cluster, built here so that no image is
 * pulled from outside. Like upstream's pause: it holds the pod's namespaces open, reaps the
 * zombies it inherits as PID 1 of a shared PID namespace, and exits cleanly on SIGINT/SIGTERM.
 * Built with `cc -static`, so the image needs no libc.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int signo) {
  (void)signo;
  _exit(0);
}

static void on_child(int signo) {
  (void)signo;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("featherweight-pause\n");
    return 0;
  }
  if (getpid() != 1) {
    /* Not fatal, as upstream: useful when run by hand for a test. */
    fprintf(stderr, "pause: warning: not running as PID 1\n");
  }
  struct sigaction terminate = {.sa_handler = on_terminate};
  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &terminate, NULL) < 0 || sigaction(SIGTERM, &terminate, NULL) < 0 ||
      sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) {
    pause();
  }
}
