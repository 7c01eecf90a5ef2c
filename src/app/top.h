/* top: `brainjar top [URL] [--token T | --token-file F]`, the terminal view of a running brainjar.
 *
 * It attaches to the daemon's WebSocket API (sinks/wsclient) and shows the same full-screen view
 * as `brainjar run` on a terminal (sinks/tui): the client publishes the daemon's events on a
 * local bus that the view reads. The token: --token, else --token-file, else $BRAINJAR_TOKEN,
 * else the file $XDG_CONFIG_HOME/brainjar/token (~/.config/brainjar/token) when it exists, else
 * none (a daemon with --web-auth off).
 *
 * Exit status: 0 quit (q, Ctrl-C, SIGTERM, the terminal hung up); 1 the daemon cannot be reached
 * at the start (refused, no answer, not a brainjar); 2 bad usage (a bad URL, an unreadable token
 * file, no terminal); 3 the token was refused. Once attached, a lost daemon is waited for (the
 * screen says "reconnecting…"). Main thread. */
#ifndef BJ_TOP_H
#define BJ_TOP_H

int bj_top_main(int argc, char **argv);

#endif
