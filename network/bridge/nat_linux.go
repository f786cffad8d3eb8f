package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/vk-applevm/vk-applevm/network/netns"
)

// Outbound NAT lives in the node's namespace: the VMs' packets leave it
// through the host's own interfaces, so that is where their source must
// become the node's address. Rules are written with the nft binary (or
// iptables where nft is missing) rather than over netlink: one atomic,
// readable nft script against about a hundred lines of expression
// encoding, for a rule set changed once per network.

// NAT tools, in order of preference.
const (
	toolNft      = "nft"
	toolIptables = "iptables"
)

// ErrNoNATTool is returned when neither nft nor iptables is installed.
var ErrNoNATTool = errors.New("neither nft nor iptables found in PATH: apt-get install nftables")

// nat masquerades the VM subnet in the node's namespace.
type nat struct {
	tool    string // toolNft or toolIptables
	nodeNS  string
	table   string // nft table, or iptables chain, named after the state root
	subnet  netip.Prefix
	nodeDev string // the veth: traffic to the VMs keeps its source
}

// pickNATTool returns the preferred tool that is installed; forced, if
// set, must be installed.
func pickNATTool(forced string) (string, error) {
	tools := []string{toolNft, toolIptables}
	if forced != "" {
		tools = []string{forced}
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err == nil {
			return t, nil
		}
	}
	if forced != "" {
		return "", fmt.Errorf("%s not found in PATH", forced)
	}
	return "", ErrNoNATTool
}

// run executes a NAT tool inside the node's namespace (the child process
// inherits the namespace of the thread that starts it).
func runIn(ctx context.Context, nsPath, stdin string, name string, args ...string) (string, error) {
	var out []byte
	err := netns.Do(nsPath, func() error {
		cmd := exec.CommandContext(ctx, name, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		var err error
		out, err = cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	return string(out), err
}

// nftScript replaces the table atomically: declaring it first makes the
// delete succeed when it does not exist yet, and nft -f applies the whole
// script as one transaction.
func (m *nat) nftScript() string {
	return fmt.Sprintf(`table ip %[1]s {}
delete table ip %[1]s
table ip %[1]s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[2]s oifname != "%[3]s" masquerade
	}
}
`, m.table, m.subnet, m.nodeDev)
}

// iptablesRule is the masquerade rule in the table's own chain.
func (m *nat) iptablesRule() []string {
	return []string{"-s", m.subnet.String(), "!", "-o", m.nodeDev, "-j", "MASQUERADE"}
}

func (m *nat) iptables(ctx context.Context, args ...string) (string, error) {
	// -w waits for the xtables lock instead of failing when another
	// iptables runs.
	return runIn(ctx, m.nodeNS, "", toolIptables, append([]string{"-w", "-t", "nat"}, args...)...)
}

// ensure installs the rules, replacing any earlier version.
func (m *nat) ensure(ctx context.Context) error {
	if m.tool == toolNft {
		if _, err := runIn(ctx, m.nodeNS, m.nftScript(), toolNft, "-f", "-"); err != nil {
			return fmt.Errorf("install NAT table %s: %w", m.table, err)
		}
		return nil
	}
	if _, err := m.iptables(ctx, "-L", m.table, "-n"); err != nil {
		if _, err := m.iptables(ctx, "-N", m.table); err != nil {
			return fmt.Errorf("create NAT chain %s: %w", m.table, err)
		}
	}
	if _, err := m.iptables(ctx, "-F", m.table); err != nil {
		return fmt.Errorf("flush NAT chain %s: %w", m.table, err)
	}
	if _, err := m.iptables(ctx, append([]string{"-A", m.table}, m.iptablesRule()...)...); err != nil {
		return fmt.Errorf("add masquerade rule to %s: %w", m.table, err)
	}
	if _, err := m.iptables(ctx, "-C", "POSTROUTING", "-j", m.table); err != nil {
		if _, err := m.iptables(ctx, "-A", "POSTROUTING", "-j", m.table); err != nil {
			return fmt.Errorf("jump from POSTROUTING to %s: %w", m.table, err)
		}
	}
	return nil
}

// check reports whether the rules are in place.
func (m *nat) check(ctx context.Context) error {
	if m.tool == toolNft {
		out, err := runIn(ctx, m.nodeNS, "", toolNft, "list", "table", "ip", m.table)
		if err != nil {
			return fmt.Errorf("NAT table %s: %w", m.table, err)
		}
		if !strings.Contains(out, m.subnet.String()) || !strings.Contains(out, "masquerade") {
			return fmt.Errorf("NAT table %s lacks the masquerade rule for %v:\n%s", m.table, m.subnet, out)
		}
		return nil
	}
	if _, err := m.iptables(ctx, append([]string{"-C", m.table}, m.iptablesRule()...)...); err != nil {
		return fmt.Errorf("NAT chain %s: %w", m.table, err)
	}
	if _, err := m.iptables(ctx, "-C", "POSTROUTING", "-j", m.table); err != nil {
		return fmt.Errorf("NAT chain %s not reached from POSTROUTING: %w", m.table, err)
	}
	return nil
}

// removeNAT deletes the table (nft) or chain (iptables) named table from
// the namespace at nsPath; what does not exist is no error. tool is the
// one pickNATTool chooses, as it did when the rules were made: probing
// with the other one would have side effects (iptables-nft creates its nat
// table just by listing it).
func removeNAT(ctx context.Context, nsPath, tool, table string) error {
	if tool == toolNft {
		script := fmt.Sprintf("table ip %[1]s {}\ndelete table ip %[1]s\n", table)
		if _, err := runIn(ctx, nsPath, script, toolNft, "-f", "-"); err != nil {
			return fmt.Errorf("remove NAT table %s: %w", table, err)
		}
		return nil
	}
	ipt := func(args ...string) error {
		_, err := runIn(ctx, nsPath, "", toolIptables, append([]string{"-w", "-t", "nat"}, args...)...)
		return err
	}
	if ipt("-L", table, "-n") != nil {
		return nil // no such chain
	}
	// Every jump to the chain must go before the chain can.
	for ipt("-D", "POSTROUTING", "-j", table) == nil {
	}
	if err := errors.Join(ipt("-F", table), ipt("-X", table)); err != nil {
		return fmt.Errorf("remove NAT chain %s: %w", table, err)
	}
	return nil
}
