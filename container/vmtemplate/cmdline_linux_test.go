package vmtemplate

import (
	"testing"

	"github.com/vk-applevm/vk-applevm/agent"
)

// The host and the guest agent do not share code; the flag the store puts
// on a template guest's command line is the variable the agent reads.
func TestTemplateCmdlineIsWhatTheAgentReads(t *testing.T) {
	if want := agent.TemplateEnv + "=1"; TemplateCmdline != want {
		t.Fatalf("TemplateCmdline %q, the agent reads %q", TemplateCmdline, want)
	}
}
