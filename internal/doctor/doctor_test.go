package doctor

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunAndPrint(t *testing.T) {
	rep := Run(context.Background(), []Check{
		{Name: "fine", Run: func(context.Context) Result { return Result{Detail: "all good"} }},
		{Name: "shaky", Run: func(context.Context) Result { return Result{Status: Warn, Detail: "slow", Fix: "speed it up"} }},
		{Name: "broken", Run: func(context.Context) Result {
			return Result{Status: Fail, Detail: "gone\nwith a second line", Fix: "bring it back"}
		}},
	})
	if !rep.Failed() {
		t.Fatal("a failed check does not fail the report")
	}
	var out bytes.Buffer
	rep.Print(&out)
	for _, want := range []string{"fine    ok", "shaky   warn", "broken  FAIL    gone with a second line", "shaky: warn\n  fix: speed it up", "broken: FAIL\n  fix: bring it back"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "fine: ") {
		t.Errorf("a passing check printed a fix:\n%s", out.String())
	}
	if Run(context.Background(), []Check{{Name: "x", Run: func(context.Context) Result { return Result{Status: Skip} }}}).Failed() {
		t.Error("a skipped check fails the report")
	}
}
