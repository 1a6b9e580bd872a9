package report

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// streamReport is a node's report of n pods, each with a distinct set of
// calls, as a recorder writes it.
func streamReport(n int) *Report {
	r := New()
	r.Node, r.Kernel, r.Arch, r.Hook = "n1", "6.18.0", "x86_64", "tp_btf"
	r.Start = time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	r.End = r.Start.Add(time.Minute)
	names := []string{"read", "write", "openat", "close", "mmap", "futex", "epoll_wait", "accept4", "mkdir", "clone"}
	for i := range n {
		var calls []string
		for j, c := range names {
			if (i>>j)&1 == 0 {
				calls = append(calls, c)
			}
		}
		r.Add(Workload{Identity: Identity{Kind: KindPod, Namespace: "shop", Pod: fmt.Sprintf("web-%d", i), Container: "nginx"},
			Syscalls: map[string][]string{"x86_64": calls}, FirstSeen: r.Start, LastSeen: r.End})
	}
	return r
}

func TestStreamRoundTrip(t *testing.T) {
	rep := streamReport(300)
	want, err := rep.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	// What a pod log holds: the recorder's standard error interleaved
	// with its stream, line by line.
	log.WriteString("time=2026-12-01T06:00:00Z level=INFO msg=\"recorder loaded\"\n")
	if err := WriteProgress(&log, Progress{Node: "n1", ElapsedSeconds: 10, Workloads: 2, Calls: 7}); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	if err := WriteStream(&block, rep); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(block.String(), "\n")
	for i, l := range lines {
		log.WriteString(l)
		if i == 1 {
			log.WriteString("level=WARN msg=\"stderr line between data lines\"\n")
		}
	}
	res, err := ReadStream(&log, "pod n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := res.Report.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("report changed through the stream:\n%s\nwant\n%s", got, want)
	}
	if res.Progress == nil || res.Progress.Workloads != 2 || res.Bytes == 0 {
		t.Fatalf("progress %+v bytes %d", res.Progress, res.Bytes)
	}
	if res.Bytes >= len(want) {
		t.Errorf("compressed %d bytes, uncompressed %d: no gain", res.Bytes, len(want))
	}
}

func TestStreamIncomplete(t *testing.T) {
	var block bytes.Buffer
	if err := WriteStream(&block, streamReport(50)); err != nil {
		t.Fatal(err)
	}
	full := block.String()
	lines := strings.SplitAfter(full, "\n")
	cases := map[string]string{
		"nothing":          "kscmp-progress {\"node\":\"n1\",\"elapsedSeconds\":3,\"workloads\":1,\"calls\":1}\n",
		"no end":           strings.Join(lines[:len(lines)-2], ""),
		"a data line lost": lines[0] + strings.Join(lines[2:], ""),
		"cut data":         strings.Replace(full, lines[1], lines[1][:len(lines[1])/2]+"\n", 1),
		"start lost":       strings.Join(lines[1:], ""),
	}
	for name, log := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := ReadStream(strings.NewReader(log), "pod n1", 0)
			if !errors.Is(err, ErrStreamIncomplete) {
				t.Fatalf("err = %v, want ErrStreamIncomplete", err)
			}
			if res.Report != nil {
				t.Fatal("a report from an incomplete stream")
			}
			if name == "nothing" && (res.Progress == nil || res.Progress.ElapsedSeconds != 3) {
				t.Fatalf("progress of an incomplete stream lost: %+v", res.Progress)
			}
		})
	}
}

func TestStreamLimits(t *testing.T) {
	var block bytes.Buffer
	if err := WriteStream(&block, streamReport(200)); err != nil {
		t.Fatal(err)
	}
	_, err := ReadStream(bytes.NewReader(block.Bytes()), "pod n1", 1000)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than 1000 bytes") {
		t.Fatalf("err = %v, want a too-large error", err)
	}
	bad := strings.Replace(block.String(), `"encoding":"gzip+base64"`, `"encoding":"zstd"`, 1)
	if _, err := ReadStream(strings.NewReader(bad), "pod n1", 0); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"zstd"`) {
		t.Fatalf("err = %v, want the encoding named", err)
	}
}

// FuzzReadStream: whatever a pod log holds, ReadStream does not panic, and a
// report it returns is valid.
func FuzzReadStream(f *testing.F) {
	var block bytes.Buffer
	_ = WriteStream(&block, streamReport(3))
	f.Add(block.Bytes())
	f.Add([]byte("kscmp-report-begin {\"encoding\":\"gzip+base64\",\"bytes\":4,\"sha256\":\"x\"}\nkscmp-data AAAA\nkscmp-report-end\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadStream(bytes.NewReader(data), "fuzz", 1<<20)
		if err == nil && (res.Report == nil || res.Report.Validate() != nil) {
			t.Fatalf("accepted an invalid stream")
		}
	})
}
