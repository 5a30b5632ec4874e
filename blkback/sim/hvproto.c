/*
 * hvproto.c - message passing for DIR/hypervisor (see hvproto.h).
 */
#include "hvproto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int simhv_send(int sock, const struct simhv_msg *msg, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * SIMHV_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = sizeof(*msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > SIMHV_MAX_FDS)
		return -EINVAL;
	if (nfds) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*msg) ? 0 : -EIO;
}

int simhv_recv(int sock, struct simhv_msg *msg, int *fds, unsigned *nfds, int flags)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = msg, .iov_len = sizeof(*msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	unsigned room = *nfds, got = 0;
	ssize_t n;
	*nfds = 0;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Take every descriptor that came, keep what fits, close the rest. */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < cnt; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (got < room)
				fds[got++] = fd;
			else
				close(fd);
		}
	}
	*nfds = got;
	if (n == 0 && got == 0)
		return 0;
	if (n != (ssize_t)sizeof(*msg) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		for (unsigned i = 0; i < got; i++)
			close(fds[i]);
		*nfds = 0;
		return -EPROTO;
	}
	msg->name[sizeof(msg->name) - 1] = '\0';
	return 1;
}

int simhv_call(int sock, struct simhv_msg *msg, const int *fds, unsigned nfds, int *rfds,
	       unsigned *nrfds)
{
	uint32_t op = msg->op;
	unsigned room = nrfds ? *nrfds : 0;
	int dummy[1];
	int r = simhv_send(sock, msg, fds, nfds);
	if (r < 0)
		return r;
	if (!nrfds) {
		rfds = dummy;
		nrfds = &room;
	}
	*nrfds = room;
	r = simhv_recv(sock, msg, rfds, nrfds, 0);
	if (r == 0)
		return -ECONNRESET;
	if (r < 0)
		return r;
	if (msg->op != op) {
		for (unsigned i = 0; i < *nrfds; i++)
			close(rfds[i]);
		*nrfds = 0;
		return -EPROTO;
	}
	if (msg->status < 0) {
		for (unsigned i = 0; i < *nrfds; i++)
			close(rfds[i]);
		*nrfds = 0;
	}
	return msg->status;
}
