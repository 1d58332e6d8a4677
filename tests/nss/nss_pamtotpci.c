/*
 * libnss_pamtotpci.so.2: a test-only NSS "passwd" source that looks names up in
 * /etc/passwd CASE-INSENSITIVELY and returns the entry with its real pw_name, the way
 * SSSD (case_sensitive = false), winbind or a case-insensitive LDAP directory do.
 * With `passwd: files pamtotpci`, getpwnam("ALICE") then returns the account "alice".
 *
 * Built by tests/tests/canonical.rs into a temporary directory and loaded only inside a
 * private mount namespace whose /etc/nsswitch.conf names it; never installed.
 *
 * Thread-safe: no static buffers or state; each call opens /etc/passwd itself and reads it with a
 * heap line buffer. The result's strings are copied into the caller's buffer; when it is
 * too small the call returns NSS_STATUS_TRYAGAIN with *errnop = ERANGE (glibc then retries
 * with a larger one).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#define PASSWD_FILE "/etc/passwd"

/* One parsed line; the pointers point into the line buffer. */
struct entry {
	char *f[7]; /* name, passwd, uid, gid, gecos, dir, shell */
	uid_t uid;
	gid_t gid;
};

static int parse_id(const char *s, unsigned long *out)
{
	char *end;
	if (*s < '0' || *s > '9')
		return 0;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && *end == '\0' && *out <= 0xfffffffeUL;
}

/* Splits `line` (modified in place) into its seven fields; 0 if it is not an entry. */
static int parse_line(char *line, struct entry *e)
{
	size_t len = strlen(line);
	unsigned long id;
	int i;

	if (len > 0 && line[len - 1] == '\n')
		line[--len] = '\0';
	/* Comments, blank lines and compat-mode (+/-) lines are not entries. */
	if (len == 0 || line[0] == '#' || line[0] == '+' || line[0] == '-' || line[0] == ':')
		return 0;
	for (i = 0; i < 7; i++) {
		e->f[i] = line;
		line = strchr(line, ':');
		if (i < 6) {
			if (line == NULL)
				return 0;
			*line++ = '\0';
		} else if (line != NULL) {
			return 0; /* more than seven fields */
		}
	}
	if (!parse_id(e->f[2], &id))
		return 0;
	e->uid = (uid_t)id;
	if (!parse_id(e->f[3], &id))
		return 0;
	e->gid = (gid_t)id;
	return 1;
}

/* Copies `e` into `result`, its strings into `buffer`. */
static enum nss_status fill(const struct entry *e, struct passwd *result, char *buffer, size_t buflen,
			    int *errnop)
{
	static const int order[5] = { 0, 1, 4, 5, 6 };
	char **dst[5] = { &result->pw_name, &result->pw_passwd, &result->pw_gecos, &result->pw_dir,
			  &result->pw_shell };
	size_t need = 0, n;
	int i;

	for (i = 0; i < 5; i++)
		need += strlen(e->f[order[i]]) + 1;
	if (buffer == NULL || need > buflen) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	for (i = 0; i < 5; i++) {
		n = strlen(e->f[order[i]]) + 1;
		memcpy(buffer, e->f[order[i]], n);
		*dst[i] = buffer;
		buffer += n;
	}
	result->pw_uid = e->uid;
	result->pw_gid = e->gid;
	return NSS_STATUS_SUCCESS;
}

/* Scans /etc/passwd for the first entry `match` accepts. */
static enum nss_status lookup(int (*match)(const struct entry *, const void *), const void *key,
			      struct passwd *result, char *buffer, size_t buflen, int *errnop)
{
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;
	struct entry e;
	enum nss_status status = NSS_STATUS_NOTFOUND;
	int saved = errno;

	fp = fopen(PASSWD_FILE, "re");
	if (fp == NULL) {
		*errnop = errno;
		errno = saved;
		return NSS_STATUS_UNAVAIL;
	}
	errno = 0;
	while (getline(&line, &cap, fp) != -1) {
		if (parse_line(line, &e) && match(&e, key)) {
			status = fill(&e, result, buffer, buflen, errnop);
			break;
		}
		errno = 0;
	}
	if (status == NSS_STATUS_NOTFOUND) {
		if (errno == ENOMEM || ferror(fp)) {
			*errnop = errno ? errno : EIO;
			status = NSS_STATUS_TRYAGAIN;
		} else {
			*errnop = ENOENT;
		}
	}
	free(line);
	fclose(fp);
	errno = saved;
	return status;
}

static int by_name(const struct entry *e, const void *key)
{
	return strcasecmp(e->f[0], (const char *)key) == 0;
}

static int by_uid(const struct entry *e, const void *key)
{
	return e->uid == *(const uid_t *)key;
}

enum nss_status _nss_pamtotpci_getpwnam_r(const char *name, struct passwd *result, char *buffer, size_t buflen,
					  int *errnop)
{
	if (name == NULL || *name == '\0') {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return lookup(by_name, name, result, buffer, buflen, errnop);
}

enum nss_status _nss_pamtotpci_getpwuid_r(uid_t uid, struct passwd *result, char *buffer, size_t buflen,
					  int *errnop)
{
	return lookup(by_uid, &uid, result, buffer, buflen, errnop);
}

/* Enumeration is left to `files`: this source lists nothing. */
enum nss_status _nss_pamtotpci_setpwent(int stayopen)
{
	(void)stayopen;
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_pamtotpci_endpwent(void)
{
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_pamtotpci_getpwent_r(struct passwd *result, char *buffer, size_t buflen, int *errnop)
{
	(void)result;
	(void)buffer;
	(void)buflen;
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}
