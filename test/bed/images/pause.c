/* pause: the sandbox's init. Sleeps forever, exits 0 on SIGINT/SIGTERM, reaps zombies. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int s) { (void)s; _exit(0); }
static void sigreap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = sigdown;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  struct sigaction sr = {0};
  sr.sa_handler = sigreap;
  sr.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sr, NULL);
  for (;;) pause();
  return 42;
}
