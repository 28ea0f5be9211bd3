// This file runs PostgreSQL's programs as the server's OS user, and holds
// the small helpers around them (ports, timeouts, the log's tail).

package pgtemp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// run runs one of the PostgreSQL programs as the server's OS user. The
// error wraps *exec.ExitError and carries the program's output.
func (s *Server) run(ctx context.Context, name string, args ...string) (string, error) {
	return s.runStarted(ctx, nil, name, args...)
}

// runStarted is run, calling started (when not nil) with the program's
// process ID once it has started.
func (s *Server) runStarted(ctx context.Context, started func(pid int), name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = "/"
	cmd.Env = s.env
	cmd.SysProcAttr = procAttr(s.cred, false)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// pg_ctl start leaves a server behind; it must not hold our pipe, and
	// does not (its output goes to the log), but never hang on it.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Start()
	if err == nil {
		if started != nil {
			started(cmd.Process.Pid)
		}
		err = cmd.Wait()
	}
	if err != nil {
		// A program killed because ctx ended failed for that reason, not
		// for anything it printed (initdb prints some 80 lines of its
		// progress): its output is left out then, and otherwise only its
		// last lines, where a program says why it failed, are kept.
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		} else if o := indent(lastLines(out.String(), outputLines)); o != "" {
			err = fmt.Errorf("%w\n%s", err, o)
		}
		if name == "pg_ctl" {
			name += " " + args[0]
		}
		return out.String(), fmt.Errorf("%s: %w", name, err)
	}
	return out.String(), nil
}

// outputLines is how many of its last lines of output a failed program's
// error carries.
const outputLines = 20

// lastLines returns the last n lines of s, after a line saying how many
// were left out.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("(%d lines before)\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}

// childEnv is the environment of the PostgreSQL programs: ours without PG*
// variables, which would override what the command lines say, and with the
// C locale, which always exists.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// osUserCredential returns the credential of the named OS user, creating a
// system user of that name if there is none.
func osUserCredential(ctx context.Context, name string) (*credential, error) {
	u, err := user.Lookup(name)
	if _, ok := errors.AsType[user.UnknownUserError](err); ok {
		out, uerr := exec.CommandContext(ctx, "useradd", "--system", "--user-group",
			"--no-create-home", "--home-dir", "/var/lib/postgresql", "--shell", "/bin/sh", name).CombinedOutput()
		// Another process may have created it meanwhile: look again either way.
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("PostgreSQL refuses to run as root and OS user %q does not exist; "+
				"creating it with useradd failed (%w): %s; create it, for instance with "+
				"`apt-get install -y postgresql`, or run as a user other than root", name, uerr, bytes.TrimSpace(out))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("look up OS user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("OS user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("OS user %q: gid %q: %w", name, u.Gid, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("OS user %q is root, which PostgreSQL refuses to run as", name)
	}
	return &credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitSeconds is the -t argument of pg_ctl: d, or less if ctx ends sooner.
func waitSeconds(ctx context.Context, d time.Duration) string {
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readTail returns the last lines (at most 4 KiB) written to path after
// offset.
func readTail(path string, offset int64) string {
	const most = 4 << 10
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	if size := fileSize(path); size-offset > most {
		offset = size - most
	}
	b, err := io.ReadAll(io.NewSectionReader(f, offset, most+1))
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	s := string(b)
	if len(b) == most {
		if _, rest, ok := strings.Cut(s, "\n"); ok {
			s = rest
		}
	}
	if s = strings.TrimSpace(s); s == "" {
		return "(empty)"
	}
	return s
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
