package discover

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"

	"github.com/kubearmor/kscmp/api"
)

// TestRecorderProfileGenerated: the embedded profiles are the policy's
// compiled ones (make generate was run after the policy changed).
func TestRecorderProfileGenerated(t *testing.T) {
	for _, f := range []api.Family{api.FamilyAMD64, api.FamilyARM64} {
		want, err := CompileRecorderProfile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := RecorderProfileJSON(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, append(want, '\n')) {
			t.Errorf("recorderprofile/%s.json is stale: run make generate", f)
		}
	}
	if _, err := RecorderProfileJSON("s390x"); err == nil {
		t.Error("a profile for an unknown family")
	}
}

// TestWriteRecorderProfile: the profile lands at the name the collector
// puts in the pod spec, with this family's content, and is not rewritten
// when it is there already.
func TestWriteRecorderProfile(t *testing.T) {
	name := RecorderProfileName()
	if !regexp.MustCompile(`^kscmp/recorder-[0-9a-f]{12}\.json$`).MatchString(name) {
		t.Fatalf("RecorderProfileName() = %q", name)
	}
	dir := t.TempDir()
	path, changed, err := WriteRecorderProfile(dir)
	if err != nil || !changed || path != filepath.Join(dir, name) {
		t.Fatalf("first write: %s %v %v", path, changed, err)
	}
	got, _ := os.ReadFile(path)
	want, _ := RecorderProfileJSON(api.Family(runtime.GOARCH))
	if !bytes.Equal(got, want) {
		t.Error("the written profile is not this family's")
	}
	if _, changed, err := WriteRecorderProfile(dir); err != nil || changed {
		t.Errorf("second write: changed %v, err %v; want unchanged", changed, err)
	}
}
