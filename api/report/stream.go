package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The stream is how a recorder pod of `kscmp discover --cluster` hands its
// node's report to the collector: as lines on its standard output, which the
// collector reads back through the API server's pod log endpoint. Nothing is
// written to the API server by the recorder, and no file is copied off the
// node.
//
//	kscmp-progress {"node":"n1","elapsedSeconds":10,"workloads":3,"calls":120}
//	kscmp-report-begin {"encoding":"gzip+base64","bytes":1234,"sha256":"…","workloads":3}
//	kscmp-data H4sIAAAAAAAA/6RUTW/bMAz9KwbPTmA7H+h8K7bD…
//	kscmp-data …
//	kscmp-report-end
//
// Every line of the stream starts with a "kscmp-" tag, so lines the recorder
// logs to standard error (which the pod log interleaves, line by line) are
// skipped. The report is the node's report as Marshal makes it, gzip-
// compressed (reports are mostly the same system call names over and over)
// and base64-encoded in lines of StreamLineWidth characters, short enough
// that the container runtime never splits one (containerd splits log lines at
// 16 KiB). bytes and sha256 are those of the compressed data: a log that was
// cut (rotated, truncated, a pod deleted early) fails the check and is
// reported as such, never read as a smaller report.
const (
	streamProgress = "kscmp-progress "
	streamBegin    = "kscmp-report-begin "
	streamData     = "kscmp-data "
	streamEnd      = "kscmp-report-end"
	// StreamEncoding is the only encoding of the stream's report.
	StreamEncoding = "gzip+base64"
	// StreamLineWidth is the length of a data line's base64 text.
	StreamLineWidth = 4096
	// DefaultMaxStream bounds the decompressed report ReadStream accepts.
	DefaultMaxStream = 256 << 20
)

// ErrStreamIncomplete is wrapped by ReadStream's error when the stream has no
// complete report: it never began, it did not end, or its bytes do not match
// its header (a cut log).
var ErrStreamIncomplete = errors.New("recorder stream has no complete report")

// Progress is a recorder's interim count, written every few seconds while it
// records.
type Progress struct {
	Node string `json:"node"`
	// Elapsed is the time recorded so far, in whole seconds.
	ElapsedSeconds int64 `json:"elapsedSeconds"`
	// Workloads is the number of workloads seen; Calls the number of
	// distinct (workload, ABI, system call) seen.
	Workloads int `json:"workloads"`
	Calls     int `json:"calls"`
	// Lost is what the recorder could not record so far (Lost.Total).
	Lost uint64 `json:"lost,omitempty"`
}

// streamHeader is the kscmp-report-begin line's object.
type streamHeader struct {
	Encoding  string `json:"encoding"`
	Bytes     int    `json:"bytes"`
	SHA256    string `json:"sha256"`
	Workloads int    `json:"workloads"`
}

// WriteProgress writes one progress line.
func WriteProgress(w io.Writer, p Progress) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s\n", streamProgress, b)
	return err
}

// WriteStream writes the report as the stream's framed, compressed block.
// The whole block is built first and written with one Write, so a reader
// never sees half a block from a recorder that is still alive.
func WriteStream(w io.Writer, r *Report) error {
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	sum := sha256.Sum256(gz.Bytes())
	hdr, err := json.Marshal(streamHeader{Encoding: StreamEncoding, Bytes: gz.Len(),
		SHA256: hex.EncodeToString(sum[:]), Workloads: len(r.Workloads)})
	if err != nil {
		return err
	}
	text := base64.StdEncoding.EncodeToString(gz.Bytes())
	var out bytes.Buffer
	out.Grow(len(text) + len(text)/StreamLineWidth*(len(streamData)+1) + 256)
	fmt.Fprintf(&out, "%s%s\n", streamBegin, hdr)
	for len(text) > 0 {
		n := min(len(text), StreamLineWidth)
		out.WriteString(streamData)
		out.WriteString(text[:n])
		out.WriteByte('\n')
		text = text[n:]
	}
	out.WriteString(streamEnd + "\n")
	_, err = w.Write(out.Bytes())
	return err
}

// StreamResult is what a recorder's stream held.
type StreamResult struct {
	// Report is the node's report; nil when the stream had none (then
	// ReadStream's error wraps ErrStreamIncomplete).
	Report *Report
	// Progress is the last progress line; nil when there was none.
	Progress *Progress
	// Bytes is the size of the compressed report.
	Bytes int
}

// ReadStream reads a recorder's stream (a pod log) to its end, skipping
// lines that are not the stream's. max bounds the decompressed report
// (0: DefaultMaxStream). The report is validated like Read's. name is used
// in errors. When the stream has progress but no complete report, the
// result holds the progress and the error wraps ErrStreamIncomplete.
func ReadStream(rd io.Reader, name string, max int64) (*StreamResult, error) {
	if max <= 0 {
		max = DefaultMaxStream
	}
	res := &StreamResult{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		hdr   *streamHeader
		text  strings.Builder
		ended bool
	)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, streamProgress):
			var p Progress
			if err := json.Unmarshal([]byte(line[len(streamProgress):]), &p); err == nil {
				res.Progress = &p
			}
		case strings.HasPrefix(line, streamBegin):
			// A second block (a recorder that wrote twice) replaces the first.
			h := new(streamHeader)
			if err := json.Unmarshal([]byte(line[len(streamBegin):]), h); err != nil {
				return res, invalid("%s: report header %q: %w", name, line, err)
			}
			if h.Encoding != StreamEncoding {
				return res, invalid("%s: report header: encoding %q: want %s", name, h.Encoding, StreamEncoding)
			}
			hdr, ended = h, false
			text.Reset()
		case strings.HasPrefix(line, streamData) && hdr != nil && !ended:
			if text.Len() > base64.StdEncoding.EncodedLen(hdr.Bytes) {
				return res, fmt.Errorf("%s: report longer than its header's %d bytes: %w", name, hdr.Bytes, ErrStreamIncomplete)
			}
			text.WriteString(line[len(streamData):])
		case line == streamEnd && hdr != nil:
			ended = true
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if hdr == nil || !ended {
		return res, fmt.Errorf("%s: %w", name, ErrStreamIncomplete)
	}
	gz, err := base64.StdEncoding.DecodeString(text.String())
	if err != nil {
		return res, fmt.Errorf("%s: report data: %v: %w", name, err, ErrStreamIncomplete)
	}
	sum := sha256.Sum256(gz)
	if len(gz) != hdr.Bytes || hex.EncodeToString(sum[:]) != hdr.SHA256 {
		return res, fmt.Errorf("%s: report is %d bytes, its header says %d (sha256 %s): %w", name, len(gz), hdr.Bytes, hdr.SHA256, ErrStreamIncomplete)
	}
	res.Bytes = len(gz)
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return res, invalid("%s: report data: %w", name, err)
	}
	lr := &io.LimitedReader{R: zr, N: max + 1}
	rep, err := Read(lr, name)
	if lr.N <= 0 {
		return res, invalid("%s: report larger than %d bytes decompressed", name, max)
	}
	if err != nil {
		return res, err
	}
	res.Report = rep
	return res, nil
}
