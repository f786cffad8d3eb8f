package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vk-applevm/vk-applevm/deploy"
)

// launchdArgs returns the ProgramArguments and the dict of a launchd agent.
func launchdArgs(t *testing.T, data []byte) ([]string, map[string]any) {
	t.Helper()
	v, err := deploy.ParsePlist(data)
	if err != nil {
		t.Fatalf("not a property list: %v\n%s", err, data)
	}
	p, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("top level is %T, want a dict", v)
	}
	raw, _ := p["ProgramArguments"].([]any)
	var args []string
	for _, a := range raw {
		s, ok := a.(string)
		if !ok {
			t.Fatalf("ProgramArguments holds %T %v, want strings", a, a)
		}
		args = append(args, s)
	}
	if len(args) < 2 {
		t.Fatalf("ProgramArguments %q: want the binary and a command", args)
	}
	return args, p
}

// TestLaunchdAgentParsesAsNodeCommand: the launchd agent's command line is
// one this binary accepts — the command exists, every flag is one of its
// real flags, no stray arguments — as cobra parses it when launchd starts
// the node.
func TestLaunchdAgentParsesAsNodeCommand(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "launchd", "io.vk-applevm.node.plist"))
	if err != nil {
		t.Fatal(err)
	}
	args, _ := launchdArgs(t, data)
	root := newRootCommand(&globals{})
	cmd, rest, err := root.Find(args[1:])
	if err != nil || cmd.Name() != "node" {
		t.Fatalf("ProgramArguments %q: command %v (%v), want node", args, cmd.Name(), err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("ProgramArguments %q: %v", args, err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		t.Fatalf("ProgramArguments %q: %v", args, err)
	}
	if got := cmd.Flags().Lookup("config").Value.String(); got != "@CONFIG@" {
		t.Errorf("--config is %q, want the @CONFIG@ join.sh fills in", got)
	}
}

// TestLaunchdAgentPathsOnAMac renders the agent as join.sh does on a Mac
// (uname says Darwin) and checks its paths against the CLI's own defaults:
// state under ~/Library/Application Support (where the node's state root
// defaults for a user), logs under ~/Library/Logs, the binary with its
// shim beside it.
func TestLaunchdAgentPathsOnAMac(t *testing.T) {
	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\necho Darwin\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	home := "/Users/Jane Doe"
	bin := home + "/vk-applevm/bin/vk-applevm"
	cmd := exec.Command("sh", filepath.Join("..", "..", "deploy", "kina", "join.sh"), "--print-plist", "--bin", bin)
	cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"), "HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("join.sh --print-plist: %v\n%s", err, stderr.String())
	}
	args, p := launchdArgs(t, out)
	stateRoot := rootFor("darwin", 501, home, "")
	want := map[string]any{
		"WorkingDirectory":  stateRoot,
		"StandardOutPath":   home + "/Library/Logs/vk-applevm/node.log",
		"StandardErrorPath": home + "/Library/Logs/vk-applevm/node.log",
		"KeepAlive":         true,
		"RunAtLoad":         true,
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %v, want %v", k, p[k], v)
		}
	}
	if args[0] != bin {
		t.Errorf("binary %q, want %q", args[0], bin)
	}
	root := newRootCommand(&globals{})
	node, rest, err := root.Find(args[1:])
	if err != nil || node.ParseFlags(rest) != nil {
		t.Fatalf("ProgramArguments %q do not parse", args)
	}
	if got := node.Flags().Lookup("config").Value.String(); got != stateRoot+"/node.yaml" {
		t.Errorf("--config %q, want node.yaml in the state root %s", got, stateRoot)
	}
}
