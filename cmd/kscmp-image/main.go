// Command kscmp-image builds kscmp's OCI image index (linux/amd64 and
// linux/arm64) without a Docker daemon, writes it as one tarball for
// `ctr images import` and `docker load`, and pushes it. See make image and
// make image-push; the work is done by package deploy/image.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubearmor/kscmp/deploy/image"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run maps the flags onto image.Options, builds, and prints the result.
func run(args []string) int {
	fs := flag.NewFlagSet("kscmp-image", flag.ContinueOnError)
	o := image.Options{Log: os.Stderr}
	var platforms, tags, created string
	fs.StringVar(&o.ModuleDir, "C", ".", "the module's root directory")
	fs.StringVar(&o.BinDir, "bin-dir", "bin/image", "where each platform's binary goes (DIR/os-arch/kscmp)")
	fs.StringVar(&o.Version, "version", "", "version linked into the binary and labelled (required)")
	fs.StringVar(&o.Revision, "revision", "", "the source's commit, labelled")
	fs.StringVar(&o.Source, "source", "https://github.com/kubearmor/kscmp", "the source repository, labelled")
	fs.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time in Unix seconds: the commit's time (default $SOURCE_DATE_EPOCH)")
	fs.StringVar(&o.Repository, "repository", "kscmp", "the image's repository, e.g. ghcr.io/you/kscmp")
	fs.StringVar(&tags, "tags", "", "comma-separated tags (default: the version and latest)")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	fs.StringVar(&o.Output, "o", "", "the tarball to write (OCI layout with Docker's manifest.json)")
	fs.BoolVar(&o.Push, "push", false, "push the index to -repository under every tag")
	busybox := fs.String("busybox", "", "instead: write an image of this static busybox (one platform: the first of -platforms) as -repository:-tags to -o")
	busyboxCmd := fs.String("busybox-cmd", "sh", "the busybox image's command, space-separated")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if created != "" {
		sec, err := strconv.ParseInt(created, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kscmp-image: -created %q: want Unix seconds (git log -1 --format=%%ct)\n", created)
			return 2
		}
		o.Created = time.Unix(sec, 0)
	}
	o.Tags = []string{o.Version, "latest"}
	if tags != "" {
		o.Tags = strings.Split(tags, ",")
	}
	for _, s := range strings.Split(platforms, ",") {
		p, err := image.ParsePlatform(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kscmp-image:", err)
			return 2
		}
		o.Platforms = append(o.Platforms, p)
	}
	if *busybox != "" {
		return writeBusybox(o, *busybox, strings.Fields(*busyboxCmd))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := image.Build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kscmp-image:", err)
		return 1
	}
	fmt.Printf("index %s\n", res.Index)
	for _, p := range res.Platforms {
		fmt.Printf("%s manifest %s binary %d bytes, layers %d bytes compressed\n", p.Platform, p.Manifest, p.BinarySize, p.ImageSize)
	}
	if o.Output != "" {
		fmt.Printf("%s (%d bytes%s): ctr -n k8s.io images import --all-platforms %s\n", o.Output, res.OutputSize, map[bool]string{false: ", unchanged"}[res.Written], o.Output)
	}
	if o.Push {
		fmt.Println("pushed:", strings.Join(res.Names, " "))
	}
	for _, n := range res.Names {
		fmt.Println("image", n)
	}
	return 0
}

// writeBusybox writes the busybox image (image.WriteBusybox) that the local
// cluster runs its test pods from, and prints its digest and name.
func writeBusybox(o image.Options, bin string, cmd []string) int {
	if len(o.Tags) != 1 || o.Output == "" {
		fmt.Fprintln(os.Stderr, "kscmp-image: -busybox wants one tag (-tags) and -o")
		return 2
	}
	digest, written, err := image.WriteBusybox(image.BusyboxOptions{
		Binary: bin, Platform: o.Platforms[0], Repository: o.Repository, Tag: o.Tags[0],
		Created: o.Created, Output: o.Output, Cmd: cmd,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "kscmp-image:", err)
		return 1
	}
	fmt.Printf("index %s\n%s (%s): ctr -n k8s.io images import %s\n", digest, o.Output,
		map[bool]string{false: "unchanged", true: "written"}[written], o.Output)
	return 0
}
