// Command genrecorderprofile compiles the node recorder's own policy
// (discover/recorderprofile/kscmp-recorder-policy.yaml) into the OCI
// profiles the binary embeds, one per family: `go generate ./discover/`
// (make generate) runs it in discover/.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

func main() {
	for _, f := range []api.Family{api.FamilyAMD64, api.FamilyARM64} {
		data, err := discover.CompileRecorderProfile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "genrecorderprofile:", err)
			os.Exit(1)
		}
		path := filepath.Join("recorderprofile", string(f)+".json")
		if _, err := fsutil.WriteManaged(path, append(data, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "genrecorderprofile:", err)
			os.Exit(1)
		}
	}
}
