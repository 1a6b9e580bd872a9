package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// maxInputFlag is the flag that limits the size of every input file.
const maxInputFlag = "max-input-size"

// byteSize is a flag value of bytes, written as Kubernetes writes
// quantities: 16Mi, 64M, 1Gi, 1048576.
type byteSize int64

func (s *byteSize) String() string {
	return resource.NewQuantity(int64(*s), resource.BinarySI).String()
}

func (s *byteSize) Set(v string) error {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return fmt.Errorf("not a size (want e.g. 16Mi, 64M, 1Gi or bytes): %w", err)
	}
	n, ok := q.AsInt64()
	if !ok || n < 1 {
		return fmt.Errorf("%s: want a whole number of bytes of at least 1", v)
	}
	*s = byteSize(n)
	return nil
}

func (s *byteSize) Type() string { return "size" }

// addMaxInput adds the flag to root, for every command: all input files
// (policies, reports, profiles) are read through fsutil.ReadRegular with
// this limit.
func addMaxInput(root *cobra.Command) {
	v := byteSize(fsutil.DefaultMaxInput)
	root.PersistentFlags().Var(&v, maxInputFlag, "largest input file (policy, report, profile) kscmp reads, e.g. 64Mi")
}

// maxInput is the limit on input files the flag (or KSCMP_MAX_INPUT_SIZE,
// or the config file) gives cmd.
func maxInput(cmd *cobra.Command) int64 {
	if cmd == nil {
		return fsutil.DefaultMaxInput
	}
	if f := cmd.Flags().Lookup(maxInputFlag); f != nil {
		if v, ok := f.Value.(*byteSize); ok {
			return int64(*v)
		}
	}
	return fsutil.DefaultMaxInput
}

// humanSize shows the limit on input files of cmd, for messages.
func humanSize(cmd *cobra.Command) string {
	return resource.NewQuantity(maxInput(cmd), resource.BinarySI).String()
}
