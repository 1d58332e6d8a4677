/* pam_bench: the cost of one login through the real libpam, as a C host (sshd, sudo,
 * login) pays it: pam_start_confdir + pam_authenticate + pam_end.
 *
 * usage: pam_bench CONFDIR SERVICE USER CODES_FILE ANSWER ROUNDS MODE [RESET_PATH RESET_SRC]
 *   ANSWER  "right" (the current code from CODES_FILE), "wrong", or "none"
 *   MODE    "inproc": every round in this process (the module is loaded by each pam_start
 *           and unloaded by each pam_end, unless it is marked nodelete);
 *           "fork": every round in a freshly forked child, as sshd runs each connection
 *           (the parent never loads a module, so each round pays the first load)
 *   RESET   before each round, outside the timed region, RESET_PATH is overwritten in place
 *           with the contents of RESET_SRC and flushed: this erases the module's replay
 *           record, so a right code is accepted again and every timed round does the real
 *           read, check and write. RESET_SRC "-": RESET_PATH is removed instead (and its
 *           directory flushed), so every timed round is a first login (no state yet).
 * Prints: "<mean ns> <median ns> <accepted rounds> <peak RSS KiB after warm-up> <peak RSS KiB at end>
 *          <current RSS KiB after warm-up> <current RSS KiB at end>".
 * C on purpose: a Rust driver would already have libgcc_s.so.1 loaded and hide its cost.
 */
#include <security/pam_appl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char answer[64];
static char reset_buf[65536];
static ssize_t reset_len = -1;

static int conv(int n, const struct pam_message **m, struct pam_response **r, void *d) {
    (void)d;
    *r = calloc(n, sizeof **r);
    if (!*r) return PAM_BUF_ERR;
    for (int i = 0; i < n; i++)
        if (m[i]->msg_style == PAM_PROMPT_ECHO_OFF || m[i]->msg_style == PAM_PROMPT_ECHO_ON)
            (*r)[i].resp = strdup(answer);
    return PAM_SUCCESS;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The code for the current 30 s step, from lines "step code" made by oathtool. */
static int current_code(const char *codes_file, char *out) {
    long step = (long)(time(NULL) / 30);
    FILE *f = fopen(codes_file, "r");
    if (!f) return -1;
    long s; char c[16];
    int found = -1;
    while (fscanf(f, "%ld %15s", &s, c) == 2)
        if (s == step) { strcpy(out, c); found = 0; break; }
    fclose(f);
    return found;
}

static int one_round(const char *confdir, const char *service, const char *user) {
    struct pam_conv cv = {conv, NULL};
    pam_handle_t *h;
    if (pam_start_confdir(service, user, &cv, confdir, &h) != PAM_SUCCESS) return -1;
    int rc = pam_authenticate(h, PAM_SILENT);
    pam_end(h, rc);
    return rc;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* Resident set size now (KiB), from /proc/self/statm: a leak makes this grow. */
static long rss_now(void) {
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long maxrss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv) {
    if (argc != 8 && argc != 10) {
        fprintf(stderr, "usage: pam_bench CONFDIR SERVICE USER CODES_FILE right|wrong|none ROUNDS inproc|fork [RESET_PATH RESET_SRC]\n");
        return 2;
    }
    const char *confdir = argv[1], *service = argv[2], *user = argv[3], *codes = argv[4], *mode = argv[5];
    int rounds = atoi(argv[6]);
    int fork_mode = strcmp(argv[7], "fork") == 0;
    const char *reset_path = argc == 10 ? argv[8] : NULL;
    int reset_remove = reset_path && strcmp(argv[9], "-") == 0;
    char reset_dir[4096] = ".";
    if (reset_remove) {
        snprintf(reset_dir, sizeof reset_dir, "%s", reset_path);
        char *slash = strrchr(reset_dir, '/');
        if (slash) *slash = 0;
    } else if (reset_path) {
        int fd = open(argv[9], O_RDONLY);
        if (fd < 0) { perror(argv[9]); return 2; }
        reset_len = read(fd, reset_buf, sizeof reset_buf);
        close(fd);
    }
    int want = strcmp(mode, "right") == 0 ? PAM_SUCCESS : -1;
    int warmup = rounds / 10 + 5;
    long long *samples = malloc(rounds * sizeof *samples);
    if (!samples) return 2;
    /* Touch every page now: the array growing into RSS must not count as the module's.
     * (Not zero: the compiler would turn malloc + memset(0) into an untouched calloc.) */
    memset(samples, 0xff, rounds * sizeof *samples);
    int n = 0, accepted = 0;
    long rss_warm = 0, now_warm = 0;
    for (int i = 0; i < warmup + rounds; i++) {
        if (i == warmup) {
            rss_warm = maxrss();
            now_warm = rss_now();
        }
        if (reset_remove) {
            int d = open(reset_dir, O_RDONLY | O_DIRECTORY);
            if ((unlink(reset_path) != 0 && errno != ENOENT) || d < 0 || fsync(d) != 0) {
                perror(reset_path);
                return 2;
            }
            close(d);
        } else if (reset_path) {
            /* In place, then flushed: the timed login must not pay for the reset's own
             * writes (a truncation would also free the file's blocks for the next write to
             * allocate again). The same for every module. */
            int fd = open(reset_path, O_WRONLY);
            if (fd < 0 || write(fd, reset_buf, reset_len) != reset_len || ftruncate(fd, reset_len) != 0 || fsync(fd) != 0) {
                perror(reset_path);
                return 2;
            }
            close(fd);
        }
        if (strcmp(mode, "right") == 0) {
            if (current_code(codes, answer) != 0) { fprintf(stderr, "no code for this time step\n"); return 2; }
        } else if (strcmp(mode, "wrong") == 0) {
            char c[16];
            if (current_code(codes, c) != 0) { fprintf(stderr, "no code for this time step\n"); return 2; }
            strcpy(answer, strcmp(c, "000000") == 0 ? "111111" : "000000");
        } else {
            answer[0] = 0;
        }
        long long t0 = now_ns();
        int rc;
        if (fork_mode) {
            pid_t pid = fork();
            if (pid == 0) _exit(one_round(confdir, service, user) & 0x7f);
            int st;
            waitpid(pid, &st, 0);
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        } else {
            rc = one_round(confdir, service, user);
        }
        long long dt = now_ns() - t0;
        /* A step can turn over between fetching the code and checking it: skip such rounds. */
        if (want == PAM_SUCCESS && rc != PAM_SUCCESS) continue;
        if (rc == PAM_SUCCESS) accepted++;
        if (i >= warmup) samples[n++] = dt;
    }
    if (n == 0) { fprintf(stderr, "no rounds counted\n"); return 1; }
    long long sum = 0;
    for (int i = 0; i < n; i++) sum += samples[i];
    qsort(samples, n, sizeof *samples, cmp);
    printf("%lld %lld %d %ld %ld %ld %ld\n", sum / n, samples[n / 2], accepted, rss_warm, maxrss(), now_warm, rss_now());
    free(samples);
    return 0;
}
