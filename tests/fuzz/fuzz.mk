# tests/fuzz/fuzz.mk — the libFuzzer harnesses, included from Makefile.am.
#
# `make check` replays every harness on its seed corpus and its regressions
# with the normal compiler (gcc) and no libFuzzer: tests/fuzz/replay_NAME
# with no arguments reads $WSN_SRCDIR/tests/fuzz/{corpus,regressions}/NAME
# (AM_TESTS_ENVIRONMENT exports WSN_SRCDIR). Makefile.am appends
# $(FUZZ_REPLAY_TESTS) to TESTS; this file only declares the programs.
#
# `make fuzz` builds each harness with clang, libFuzzer and ASan+UBSan,
# compiling the parsers' own .c files (not the gcc-built libraries, so the
# instrumentation covers them), into tests/fuzz/bin/, then runs each for
# FUZZ_SECONDS on a copy of its corpus, FUZZ_JOBS at a time; a crash fails
# the target and lands in tests/fuzz/new-regressions/NAME/ of the build tree.
#   make fuzz FUZZ_SECONDS=300 FUZZ_JOBS=2 FUZZ_HARNESSES="jwt ws_frame"
#
# Must be included after check_PROGRAMS and EXTRA_DIST are first set (it
# appends to them). It defines clean-local (drops bin/ and work/) and
# distclean-local (also new-regressions/); a Makefile.am wanting its own must
# merge them.

FUZZ_HARNESSES = http_request ws_frame utf8 jwt ws_message queue login_body

# ---- replay under `make check` ------------------------------------------
FUZZ_REPLAY_TESTS = \
	tests/fuzz/replay_http_request \
	tests/fuzz/replay_ws_frame \
	tests/fuzz/replay_utf8 \
	tests/fuzz/replay_jwt \
	tests/fuzz/replay_ws_message \
	tests/fuzz/replay_queue \
	tests/fuzz/replay_login_body
check_PROGRAMS += $(FUZZ_REPLAY_TESTS)

FUZZ_REPLAY_MAIN = tests/fuzz/replay_main.c tests/fuzz/fuzz.h
FUZZ_REPLAY_LIBS = libwsnworker.a $(BASE_LIBS)

# Per-program CPPFLAGS give each its FUZZ_HARNESS (and its own replay_main.o).
tests_fuzz_replay_http_request_SOURCES = tests/fuzz/fuzz_http_request.c $(FUZZ_REPLAY_MAIN)
tests_fuzz_replay_http_request_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_HARNESS='"http_request"'
tests_fuzz_replay_http_request_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_ws_frame_SOURCES = tests/fuzz/fuzz_ws_frame.c $(FUZZ_REPLAY_MAIN)
tests_fuzz_replay_ws_frame_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_HARNESS='"ws_frame"'
tests_fuzz_replay_ws_frame_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_utf8_SOURCES = tests/fuzz/fuzz_utf8.c $(FUZZ_REPLAY_MAIN)
tests_fuzz_replay_utf8_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_HARNESS='"utf8"'
tests_fuzz_replay_utf8_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_jwt_SOURCES = tests/fuzz/fuzz_jwt.c $(FUZZ_REPLAY_MAIN)
tests_fuzz_replay_jwt_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_HARNESS='"jwt"'
tests_fuzz_replay_jwt_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_ws_message_SOURCES = tests/fuzz/fuzz_ws_message.c $(FUZZ_REPLAY_MAIN)
tests_fuzz_replay_ws_message_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_HARNESS='"ws_message"'
tests_fuzz_replay_ws_message_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_queue_SOURCES = tests/fuzz/fuzz_queue.c $(FUZZ_REPLAY_MAIN)
tests_fuzz_replay_queue_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_HARNESS='"queue"'
tests_fuzz_replay_queue_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_login_body_SOURCES = tests/fuzz/fuzz_login_body.c $(FUZZ_REPLAY_MAIN)
tests_fuzz_replay_login_body_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_HARNESS='"login_body"'
tests_fuzz_replay_login_body_LDADD = $(FUZZ_REPLAY_LIBS)

# Directories are distributed whole (dotfiles included, so the empty
# regression folders exist in the tarball).
EXTRA_DIST += tests/fuzz/corpus tests/fuzz/regressions tests/fuzz/dict tests/fuzz/run-fuzz.sh

# ---- `make fuzz` ---------------------------------------------------------
FUZZ_SECONDS = 60
FUZZ_JOBS = 2
FUZZ_CC = clang-14
# Not $(CFLAGS): those are for gcc and must not change what is fuzzed. (No
# automake-looking names like FUZZ_CFLAGS or FUZZ_PROGRAMS here: automake
# would take them for a target's flags or a primary.)
FUZZ_CC_FLAGS = -std=c11 -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_COMPILE = $(FUZZ_CC) $(AM_CPPFLAGS) $(FUZZ_CC_FLAGS) \
	$(JSONC_CFLAGS) $(OPENSSL_CFLAGS) $(LIBJWT_CFLAGS)
FUZZ_LINK_LIBS = $(LIBJWT_LIBS) $(JSONC_LIBS) $(OPENSSL_LIBS)
FUZZ_BIN = tests/fuzz/bin
FUZZ_DEPS = $(srcdir)/tests/fuzz/fuzz.h $(srcdir)/tests/fuzz/fuzz.mk

# Each harness with exactly the project sources it tests (and the headers
# that, changed, must rebuild it). A parser that starts calling another
# module needs that module's .c added here (the link says which).
FUZZ_HTTP_REQUEST_SRC = $(srcdir)/tests/fuzz/fuzz_http_request.c $(srcdir)/workers/http_request.c \
	$(srcdir)/src/common/decimal.c $(srcdir)/src/common/percent.c
FUZZ_HTTP_REQUEST_HDR = $(srcdir)/workers/http_request.h $(srcdir)/src/common/decimal.h \
	$(srcdir)/src/common/percent.h
FUZZ_WS_FRAME_SRC = $(srcdir)/tests/fuzz/fuzz_ws_frame.c $(srcdir)/workers/ws_frame.c \
	$(srcdir)/src/common/utf8.c
FUZZ_WS_FRAME_HDR = $(srcdir)/workers/ws_frame.h $(srcdir)/src/common/utf8.h
FUZZ_UTF8_SRC = $(srcdir)/tests/fuzz/fuzz_utf8.c $(srcdir)/src/common/utf8.c
FUZZ_UTF8_HDR = $(srcdir)/src/common/utf8.h
FUZZ_JWT_SRC = $(srcdir)/tests/fuzz/fuzz_jwt.c $(srcdir)/src/common/auth.c \
	$(srcdir)/src/common/jwt_keys.c $(srcdir)/src/common/rfile.c $(srcdir)/src/common/errbuf.c \
	$(srcdir)/src/common/decimal.c $(srcdir)/src/common/utf8.c
FUZZ_JWT_HDR = $(srcdir)/src/common/auth.h $(srcdir)/src/common/secrets.h \
	$(srcdir)/src/common/jwt_keys.h $(srcdir)/src/common/rfile.h $(srcdir)/src/common/errbuf.h \
	$(srcdir)/src/common/decimal.h $(srcdir)/src/common/utf8.h
FUZZ_WS_MESSAGE_SRC = $(srcdir)/tests/fuzz/fuzz_ws_message.c $(srcdir)/workers/ws_message.c
FUZZ_WS_MESSAGE_HDR = $(srcdir)/workers/ws_message.h
FUZZ_QUEUE_SRC = $(srcdir)/tests/fuzz/fuzz_queue.c $(srcdir)/shm/queue.c
FUZZ_QUEUE_HDR = $(srcdir)/shm/queue.h
FUZZ_LOGIN_BODY_SRC = $(srcdir)/tests/fuzz/fuzz_login_body.c $(srcdir)/workers/login_body.c \
	$(srcdir)/src/common/utf8.c
FUZZ_LOGIN_BODY_HDR = $(srcdir)/workers/login_body.h $(srcdir)/src/common/utf8.h \
	$(srcdir)/src/common/password.h $(srcdir)/src/common/users_file.h

FUZZ_BINS = \
	$(FUZZ_BIN)/fuzz_http_request \
	$(FUZZ_BIN)/fuzz_ws_frame \
	$(FUZZ_BIN)/fuzz_utf8 \
	$(FUZZ_BIN)/fuzz_jwt \
	$(FUZZ_BIN)/fuzz_ws_message \
	$(FUZZ_BIN)/fuzz_queue \
	$(FUZZ_BIN)/fuzz_login_body

$(FUZZ_BIN)/fuzz_http_request: $(FUZZ_HTTP_REQUEST_SRC) $(FUZZ_HTTP_REQUEST_HDR) $(FUZZ_DEPS)
	$(AM_V_CCLD)$(MKDIR_P) $(FUZZ_BIN) && \
	$(FUZZ_COMPILE) -o $@ $(FUZZ_HTTP_REQUEST_SRC) $(FUZZ_LINK_LIBS)
$(FUZZ_BIN)/fuzz_ws_frame: $(FUZZ_WS_FRAME_SRC) $(FUZZ_WS_FRAME_HDR) $(FUZZ_DEPS)
	$(AM_V_CCLD)$(MKDIR_P) $(FUZZ_BIN) && \
	$(FUZZ_COMPILE) -o $@ $(FUZZ_WS_FRAME_SRC) $(FUZZ_LINK_LIBS)
$(FUZZ_BIN)/fuzz_utf8: $(FUZZ_UTF8_SRC) $(FUZZ_UTF8_HDR) $(FUZZ_DEPS)
	$(AM_V_CCLD)$(MKDIR_P) $(FUZZ_BIN) && \
	$(FUZZ_COMPILE) -o $@ $(FUZZ_UTF8_SRC) $(FUZZ_LINK_LIBS)
$(FUZZ_BIN)/fuzz_jwt: $(FUZZ_JWT_SRC) $(FUZZ_JWT_HDR) $(FUZZ_DEPS)
	$(AM_V_CCLD)$(MKDIR_P) $(FUZZ_BIN) && \
	$(FUZZ_COMPILE) -o $@ $(FUZZ_JWT_SRC) $(FUZZ_LINK_LIBS)
$(FUZZ_BIN)/fuzz_ws_message: $(FUZZ_WS_MESSAGE_SRC) $(FUZZ_WS_MESSAGE_HDR) $(FUZZ_DEPS)
	$(AM_V_CCLD)$(MKDIR_P) $(FUZZ_BIN) && \
	$(FUZZ_COMPILE) -o $@ $(FUZZ_WS_MESSAGE_SRC) $(FUZZ_LINK_LIBS)
$(FUZZ_BIN)/fuzz_queue: $(FUZZ_QUEUE_SRC) $(FUZZ_QUEUE_HDR) $(FUZZ_DEPS)
	$(AM_V_CCLD)$(MKDIR_P) $(FUZZ_BIN) && \
	$(FUZZ_COMPILE) -o $@ $(FUZZ_QUEUE_SRC) $(FUZZ_LINK_LIBS)
$(FUZZ_BIN)/fuzz_login_body: $(FUZZ_LOGIN_BODY_SRC) $(FUZZ_LOGIN_BODY_HDR) $(FUZZ_DEPS)
	$(AM_V_CCLD)$(MKDIR_P) $(FUZZ_BIN) && \
	$(FUZZ_COMPILE) -o $@ $(FUZZ_LOGIN_BODY_SRC) $(FUZZ_LINK_LIBS)

# The binaries build in parallel under make -j; the runs are FUZZ_JOBS wide.
fuzz: $(FUZZ_BINS)
	$(SHELL) $(abs_srcdir)/tests/fuzz/run-fuzz.sh '$(abs_srcdir)' '$(abs_top_builddir)' \
	  '$(FUZZ_SECONDS)' '$(FUZZ_JOBS)' $(FUZZ_HARNESSES)
fuzz-build: $(FUZZ_BINS)
# Found crashes (new-regressions) survive `make clean`; only distclean drops them.
fuzz-clean:
	-rm -rf $(FUZZ_BIN) tests/fuzz/work
clean-local: fuzz-clean
distclean-local:
	-rm -rf tests/fuzz/new-regressions
.PHONY: fuzz fuzz-build fuzz-clean
