/* nginx stand-in for critest: comm "nginx", cmdline "nginx: master process ...", writes
 * /var/run/nginx.pid and serves /usr/share/nginx/html with busybox httpd on $NGINX_PORT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TITLE "nginx: master process /usr/sbin/nginx -g daemon off;"

static pid_t child;
static void down(int s) { (void)s; if (child > 0) kill(child, SIGTERM); _exit(0); }

int main(int argc, char **argv) {
  (void)argc;
  if (strcmp(argv[0], TITLE) != 0) {
    execl("/usr/sbin/nginx", TITLE, (char *)NULL);
    perror("exec");
    return 1;
  }
  const char *port = getenv("NGINX_PORT");
  if (!port) port = "80";
  mkdir("/var/run", 0755);
  FILE *f = fopen("/var/run/nginx.pid", "w");
  if (f) { fprintf(f, "%d\n", getpid()); fclose(f); }
  signal(SIGTERM, down);
  signal(SIGINT, down);
  signal(SIGQUIT, down);
  child = fork();
  if (child == 0) {
    execl("/bin/busybox", "httpd", "-f", "-v", "-p", port, "-h", "/usr/share/nginx/html", (char *)NULL);
    _exit(127);
  }
  for (;;) {
    int st;
    pid_t p = wait(&st);
    if (p == child) return 1;
    if (p < 0) pause();
  }
}
