// Headwater's ffmpeg fork server.
//
// Preloaded into ffmpeg (LD_PRELOAD) with HEADWATER_FORKSERVER_FD naming a
// SOCK_SEQPACKET socket, this library takes over __libc_start_main before
// ffmpeg's main runs: the process, its 200-odd shared libraries loaded and
// relocated once (LD_BIND_NOW), becomes a server that forks one child per
// request. A child gets the request's argv and its three descriptors as
// stdin, stdout and stderr, and then runs ffmpeg's main as if it had just
// been executed. Starting Debian's ffmpeg costs ~70 ms of CPU in the
// dynamic linker and the kernel; a fork costs a few.
//
// Protocol (every message a fixed struct hw_msg, native byte order, except
// requests):
//   server -> Headwater  HELLO    pid = server pid, status = protocol version
//   Headwater -> server  request: argv as NUL-terminated strings (argv[0]
//                        first), SCM_RIGHTS with exactly 3 descriptors
//   server -> Headwater  SPAWNED  pid = child (status 0), or status = errno
//   server -> Headwater  EXITED   pid, status = wait status, CPU times
// A SPAWNED always precedes the EXITED of the same child. When Headwater
// closes its end the server exits; children die with it (PDEATHSIG).
//
// Without HEADWATER_FORKSERVER_FD the library does nothing.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define HW_PROTOCOL 1
#define HW_MAX_REQUEST (64 * 1024)
#define HW_MAX_ARGS 4096

enum { HW_HELLO = 1, HW_SPAWNED = 2, HW_EXITED = 3 };

struct hw_msg {
	int32_t kind;
	int32_t pid;
	int32_t status;
	int32_t reserved;
	int64_t utime_us;
	int64_t stime_us;
	int64_t maxrss_kb;
};

typedef int (*hw_main_fn)(int, char **, char **);
typedef int (*hw_start_fn)(hw_main_fn, int, char **, void (*)(void), void (*)(void),
			   void (*)(void), void *);

extern char **environ;

static int hw_sigchld_pipe[2] = {-1, -1};
static char hw_request[HW_MAX_REQUEST + 1];

static void hw_on_sigchld(int sig) {
	(void)sig;
	int saved = errno;
	char c = 0;
	ssize_t n = write(hw_sigchld_pipe[1], &c, 1);
	(void)n;
	errno = saved;
}

static void hw_send(int ctl, const struct hw_msg *m) {
	for (;;) {
		ssize_t n = send(ctl, m, sizeof *m, MSG_NOSIGNAL);
		if (n == (ssize_t)sizeof *m)
			return;
		if (n < 0 && errno == EINTR)
			continue;
		_exit(1); // Headwater is gone: the children die with us
	}
}

static int64_t hw_us(struct timeval tv) { return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec; }

static void hw_reap(int ctl) {
	for (;;) {
		int st;
		struct rusage ru;
		pid_t pid = wait4(-1, &st, WNOHANG, &ru);
		if (pid <= 0)
			return;
		struct hw_msg m = {HW_EXITED, pid, st, 0, hw_us(ru.ru_utime), hw_us(ru.ru_stime), ru.ru_maxrss};
		hw_send(ctl, &m);
	}
}

static void hw_reply_error(int ctl, int err) {
	struct hw_msg m = {HW_SPAWNED, 0, err, 0, 0, 0, 0};
	hw_send(ctl, &m);
}

// hw_serve_one handles a request. It returns 0 in a new child, whose argc
// and argv it sets, and -1 in the server.
static int hw_serve_one(int ctl, pid_t server, int *argc_out, char ***argv_out) {
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = {hw_request, HW_MAX_REQUEST};
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof cm.buf;
	ssize_t n = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC);
	if (n == 0)
		_exit(0); // Headwater closed the socket
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return -1;
		_exit(1);
	}
	int fds[4];
	int nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			if (nfds < 4)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
	if (nfds != 3 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n < 2 || hw_request[n - 1] != 0) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		hw_reply_error(ctl, EINVAL);
		return -1;
	}

	// argv, then a NULL, then the environment, as on a fresh process's
	// stack (some libc versions find environ after argv).
	int argc = 0;
	for (ssize_t i = 0; i < n; i++)
		if (hw_request[i] == 0)
			argc++;
	int envc = 0;
	while (environ != NULL && environ[envc] != NULL)
		envc++;
	if (argc > HW_MAX_ARGS) {
		for (int i = 0; i < 3; i++)
			close(fds[i]);
		hw_reply_error(ctl, E2BIG);
		return -1;
	}
	char **argv = calloc((size_t)argc + envc + 2, sizeof(char *));
	char *args = malloc((size_t)n);
	if (argv == NULL || args == NULL) {
		free(argv);
		free(args);
		for (int i = 0; i < 3; i++)
			close(fds[i]);
		hw_reply_error(ctl, ENOMEM);
		return -1;
	}
	memcpy(args, hw_request, (size_t)n);
	for (int i = 0, off = 0; i < argc; i++) {
		argv[i] = args + off;
		off += (int)strlen(args + off) + 1;
	}
	for (int i = 0; i < envc; i++)
		argv[argc + 1 + i] = environ[i];

	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != server)
			_exit(1);
		setpgid(0, 0); // its own group: Headwater kills the group
		signal(SIGCHLD, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (int i = 0; i < 3; i++) {
			if (dup2(fds[i], i) < 0)
				_exit(127);
		}
		for (int i = 0; i < 3; i++)
			if (fds[i] > 2)
				close(fds[i]);
		close(ctl);
		close(hw_sigchld_pipe[0]);
		close(hw_sigchld_pipe[1]);
		*argc_out = argc;
		*argv_out = argv;
		return 0;
	}
	int err = errno;
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	free(argv);
	free(args);
	if (pid < 0) {
		hw_reply_error(ctl, err);
		return -1;
	}
	struct hw_msg m = {HW_SPAWNED, pid, 0, 0, 0, 0, 0};
	hw_send(ctl, &m);
	return -1;
}

// hw_serve runs the server; it returns only in a child.
static void hw_serve(int ctl, int *argc, char ***argv) {
	pid_t server = getpid();
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (pipe2(hw_sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		_exit(1);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = hw_on_sigchld;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		_exit(1);
	struct hw_msg hello = {HW_HELLO, server, HW_PROTOCOL, 0, 0, 0, 0};
	hw_send(ctl, &hello);
	for (;;) {
		struct pollfd p[2] = {{ctl, POLLIN, 0}, {hw_sigchld_pipe[0], POLLIN, 0}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (p[1].revents) {
			char buf[64];
			while (read(hw_sigchld_pipe[0], buf, sizeof buf) > 0) {
			}
			hw_reap(ctl);
		}
		if (p[0].revents) {
			if (hw_serve_one(ctl, server, argc, argv) == 0)
				return;
			hw_reap(ctl);
		}
	}
}

int __libc_start_main(hw_main_fn main, int argc, char **argv, void (*init)(void),
		      void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
	hw_start_fn real = (hw_start_fn)dlsym(RTLD_NEXT, "__libc_start_main");
	if (real == NULL)
		_exit(127);
	const char *fd = getenv("HEADWATER_FORKSERVER_FD");
	if (fd == NULL || *fd == 0)
		return real(main, argc, argv, init, fini, rtld_fini, stack_end);
	int ctl = atoi(fd);
	// The descriptor the library was preloaded from is no longer needed.
	const char *libfd = getenv("HEADWATER_FORKSERVER_LIBFD");
	if (libfd != NULL && *libfd != 0)
		close(atoi(libfd));
	// Children see a plain environment: no preload, no eager binding.
	unsetenv("HEADWATER_FORKSERVER_LIBFD");
	unsetenv("HEADWATER_FORKSERVER_FD");
	unsetenv("LD_PRELOAD");
	unsetenv("LD_BIND_NOW");
	hw_serve(ctl, &argc, &argv);
	return real(main, argc, argv, init, fini, rtld_fini, stack_end);
}
