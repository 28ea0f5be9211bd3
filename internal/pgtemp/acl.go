// This file lets the server's OS user reach a local database's directory
// when this process is root: Options.GrantSearch's ACL entries.

package pgtemp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// reach makes sure the server's OS user can pass through every directory
// above dir: with Options.GrantSearch by adding an ACL entry that gives
// that user (only) search permission where it lacks it, otherwise by
// failing with an error that names the first such directory.
func (s *Server) reach(ctx context.Context, dir string) error {
	var above []string
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		above = append([]string{d}, above...)
		if d == filepath.Dir(d) {
			break
		}
	}
	for range above {
		blocked, err := s.firstBlocked(ctx, above)
		if err != nil || blocked == "" {
			return err
		}
		if !s.opts.GrantSearch {
			return fmt.Errorf("PostgreSQL runs as OS user %q here (this process is root), and %s is not searchable by it: "+
				"use a directory it can reach, or give it search permission (setfacl -m u:%s:x %s)",
				s.osUser, blocked, s.osUser, blocked)
		}
		if err := grantSearch(blocked, s.cred.Uid); err != nil {
			return fmt.Errorf("PostgreSQL runs as OS user %q here (this process is root), and %s is not searchable by it; "+
				"giving it search permission failed: %w (chmod o+x %s would do)", s.osUser, blocked, err, blocked)
		}
		s.granted = append(s.granted, blocked)
	}
	return nil
}

// firstBlocked returns the first of dirs (outermost first) that the
// server's OS user cannot search, or "". It asks a shell running as that
// user, which applies the kernel's own rules (mode bits, ACLs, groups).
func (s *Server) firstBlocked(ctx context.Context, dirs []string) (string, error) {
	const script = `for d; do [ -x "$d" ] || { printf '%s\n' "$d"; exit 0; }; done`
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", script, "sh"}, dirs...)...)
	cmd.Dir = "/"
	cmd.Env = s.env
	cmd.SysProcAttr = procAttr(s.cred, false)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("check that OS user %q can reach %s: %w", s.osUser, dirs[len(dirs)-1], err)
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

// POSIX ACLs as Linux stores them in the system.posix_acl_access
// attribute (linux/posix_acl_xattr.h): a version, then entries of tag,
// permissions and id, sorted by tag and then id.
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclNoID     = 0xffffffff
	aclXattr    = "system.posix_acl_access"
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// grantSearch adds search permission for uid to dir's access ACL, as
// `setfacl -m u:UID:x` would (the mask is recomputed as setfacl does).
func grantSearch(dir string, uid uint32) error {
	entries, err := readACL(dir)
	if err != nil {
		return err
	}
	found := false
	for i := range entries {
		if entries[i].tag == aclUser && entries[i].id == uid {
			entries[i].perm |= 1
			found = true
		}
	}
	if !found {
		entries = append(entries, aclEntry{tag: aclUser, perm: 1, id: uid})
	}
	var mask uint16
	kept := entries[:0]
	for _, e := range entries {
		switch e.tag {
		case aclMask:
			continue
		case aclUser, aclGroupObj, aclGroup:
			mask |= e.perm
		}
		kept = append(kept, e)
	}
	entries = append(kept, aclEntry{tag: aclMask, perm: mask, id: aclNoID})
	// Sorted by tag, then id: the kernel refuses any other order.
	for i := 1; i < len(entries); i++ {
		for j := i; j > 0 && (entries[j].tag < entries[j-1].tag ||
			entries[j].tag == entries[j-1].tag && entries[j].id < entries[j-1].id); j-- {
			entries[j], entries[j-1] = entries[j-1], entries[j]
		}
	}
	buf := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		buf = binary.LittleEndian.AppendUint16(buf, e.tag)
		buf = binary.LittleEndian.AppendUint16(buf, e.perm)
		buf = binary.LittleEndian.AppendUint32(buf, e.id)
	}
	if err := setXattr(dir, aclXattr, buf); err != nil {
		return fmt.Errorf("set ACL of %s: %w", dir, err)
	}
	return nil
}

// readACL returns dir's access ACL, made from its mode bits when it has
// none.
func readACL(dir string) ([]aclEntry, error) {
	buf := make([]byte, 4096)
	n, err := getXattr(dir, aclXattr, buf)
	if errors.Is(err, errNoXattr) {
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", dir, err)
		}
		mode := uint16(fi.Mode().Perm())
		return []aclEntry{
			{tag: aclUserObj, perm: mode >> 6 & 7, id: aclNoID},
			{tag: aclGroupObj, perm: mode >> 3 & 7, id: aclNoID},
			{tag: aclOther, perm: mode & 7, id: aclNoID},
		}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ACL of %s: %w", dir, err)
	}
	b := buf[:n]
	if len(b) < 4 || binary.LittleEndian.Uint32(b) != aclVersion || (len(b)-4)%8 != 0 {
		return nil, fmt.Errorf("read ACL of %s: unknown format", dir)
	}
	var entries []aclEntry
	for b = b[4:]; len(b) > 0; b = b[8:] {
		entries = append(entries, aclEntry{
			tag:  binary.LittleEndian.Uint16(b),
			perm: binary.LittleEndian.Uint16(b[2:]),
			id:   binary.LittleEndian.Uint32(b[4:]),
		})
	}
	return entries, nil
}
