package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// passwdEntry is the part of an /etc/passwd line the agent uses.
type passwdEntry struct {
	name string
	uid  uint32
	home string
}

// findUser returns the /etc/passwd entry for uid, if any.
func findUser(passwd io.Reader, uid uint32) (passwdEntry, bool) {
	sc := bufio.NewScanner(passwd)
	for sc.Scan() {
		// name:password:uid:gid:gecos:home:shell
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 || strings.HasPrefix(f[0], "#") {
			continue
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(id) != uid {
			continue
		}
		return passwdEntry{name: f[0], uid: uid, home: f[5]}, true
	}
	return passwdEntry{}, false
}

// supplementaryGroups returns the gids of the /etc/group entries listing
// user as a member, as initgroups(3) would.
func supplementaryGroups(group io.Reader, user string) []uint32 {
	var gids []uint32
	sc := bufio.NewScanner(group)
	for sc.Scan() {
		// name:password:gid:member,member
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if strings.TrimSpace(m) == user {
				gids = append(gids, uint32(gid))
				break
			}
		}
	}
	return gids
}

// mergeGroups returns the distinct gids of the lists, in order of first
// appearance, without primary.
func mergeGroups(primary uint32, lists ...[]uint32) []uint32 {
	seen := map[uint32]bool{primary: true}
	var out []uint32
	for _, l := range lists {
		for _, g := range l {
			if !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	return out
}

// defaultPath is the PATH a process gets when its environment has none
// (containerd's default for Linux containers).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// envValue returns the value of key in env ("KEY=value" entries); the last
// entry wins, as in getenv after putenv.
func envValue(env []string, key string) (string, bool) {
	var val string
	var found bool
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// resolveUser applies Docker's USER rules to spec ("user[:group]", each a
// name or a number): a named user must exist in passwd; a numeric one may
// not (its group is then 0); the group defaults to the user's primary
// group from passwd.
func resolveUser(spec string, passwd, group []byte) (uid, gid uint32, err error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return 0, 0, fmt.Errorf("user %q: want user[:group]", spec)
	}
	var entry *passwdLine
	if n, perr := strconv.ParseUint(userPart, 10, 32); perr == nil {
		uid = uint32(n)
		entry = lookupPasswd(passwd, func(l passwdLine) bool { return l.uid == uid })
	} else {
		entry = lookupPasswd(passwd, func(l passwdLine) bool { return l.name == userPart })
		if entry == nil {
			return 0, 0, fmt.Errorf("user %q: no such user in the container's /etc/passwd", userPart)
		}
		uid = entry.uid
	}
	if entry != nil {
		gid = entry.gid
	}
	if !hasGroup {
		return uid, gid, nil
	}
	if n, perr := strconv.ParseUint(groupPart, 10, 32); perr == nil {
		return uid, uint32(n), nil
	}
	sc := bufio.NewScanner(bytes.NewReader(group))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 || f[0] != groupPart {
			continue
		}
		if n, perr := strconv.ParseUint(f[2], 10, 32); perr == nil {
			return uid, uint32(n), nil
		}
	}
	return 0, 0, fmt.Errorf("group %q: no such group in the container's /etc/group", groupPart)
}

type passwdLine struct {
	name     string
	uid, gid uint32
}

func lookupPasswd(passwd []byte, match func(passwdLine) bool) *passwdLine {
	sc := bufio.NewScanner(bytes.NewReader(passwd))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		l := passwdLine{name: f[0], uid: uint32(uid), gid: uint32(gid)}
		if match(l) {
			return &l
		}
	}
	return nil
}
