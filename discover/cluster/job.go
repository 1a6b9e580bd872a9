package cluster

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// The labels and annotations of a run's Jobs and pods.
const (
	// LabelApp=AppName marks every recorder Job and pod.
	LabelApp = "app.kubernetes.io/name"
	AppName  = "kscmp-recorder"
	// LabelRun carries the run's name.
	LabelRun = "kscmp.io/run"
	// AnnotationNode names the node a Job records.
	AnnotationNode = "kscmp.io/node"
	// AnnotationStop on a recorder pod (any value) ends its recording
	// early; the recorder still writes its report.
	AnnotationStop = "kscmp.io/stop"
	// RecorderContainer is the container whose log is the stream.
	RecorderContainer = "recorder"
	// ServiceAccount is the recorders' service account.
	ServiceAccount = "kscmp-recorder"
	// deadlineSlack is added to the duration for activeDeadlineSeconds: the
	// time to pull the image, load the recorder and write the report.
	deadlineSlack = 300 * time.Second
)

// Defaults of Options.
const (
	DefaultRecorderNamespace = "kscmp-system"
	DefaultImage             = "kscmp:latest"
	DefaultKubeletRoot       = "/var/lib/kubelet"
	DefaultKeep              = time.Hour
	DefaultInterval          = 10 * time.Second
)

// DefaultCaps are the capabilities the recorder container adds to an empty
// set (all others dropped): creating the maps and loading and attaching
// the eBPF programs, the minimum the recorder's tests prove
// (discover.RecorderCapabilities, which the CLI passes).
var DefaultCaps = []string{"BPF", "PERFMON"}

// runName is what a run's name may be: a DNS label short enough that the
// Job's name (kscmp-rec-RUN-xxxxxxxx) stays within 63 characters.
var runName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,42}[a-z0-9])?$`)

// ValidRun checks a run's name.
func ValidRun(run string) error {
	if !runName.MatchString(run) {
		return fmt.Errorf("run %q: want lower-case letters, digits and '-', at most 44, starting and ending alphanumeric: %w", run, ErrInvalid)
	}
	return nil
}

// NewRun names a new run by its start time (UTC) and 4 random hex digits,
// so runs sort by time and two started in the same second differ.
func NewRun(now time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// JobName is the name of the run's Job for node: the node's name hashed,
// since node names can be longer than a Job's name may be.
func JobName(run, node string) string {
	sum := sha256.Sum256([]byte(node))
	return "kscmp-rec-" + run + "-" + hex.EncodeToString(sum[:4])
}

// JobFor returns the Job that records node for the run, as the contract
// with the recorder says (without hostPID, which the recorder proved it
// does not need, unless Options.HostPID): one pod pinned to the node (nodeName, so the
// scheduler is not involved and taints are tolerated), never retried,
// ended by its deadline and deleted by its TTL when the CLI is gone.
func JobFor(o *Options, run, node string) *batchv1.Job {
	labels := map[string]string{LabelApp: AppName, LabelRun: run}
	ann := map[string]string{AnnotationNode: node}
	deadline := int64((o.Duration + deadlineSlack) / time.Second)
	ttl := int32(o.Keep / time.Second)
	args := []string{"discover", "--node-recorder", "--run", run,
		"--duration", o.Duration.String(), "--interval", o.Interval.String()}
	if o.Namespace != "" {
		args = append(args, "--namespace", o.Namespace)
	}
	if o.Selector != "" {
		args = append(args, "--selector", o.Selector)
	}
	mount := []corev1.VolumeMount{{Name: "seccomp", MountPath: "/seccomp"}}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: JobName(run, node), Namespace: o.RecorderNamespace, Labels: labels, Annotations: ann},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To[int32](0),
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: &ttl,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann},
				Spec: corev1.PodSpec{
					NodeName:                     node,
					RestartPolicy:                corev1.RestartPolicyNever,
					ServiceAccountName:           ServiceAccount,
					AutomountServiceAccountToken: ptr.To(true),
					HostPID:                      o.HostPID,
					Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Volumes: []corev1.Volume{{Name: "seccomp", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
						Path: path.Join(o.KubeletRoot, "seccomp"), Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}}},
					InitContainers: []corev1.Container{{
						Name: "profile", Image: o.Image, ImagePullPolicy: corev1.PullIfNotPresent,
						Args:                     []string{"discover", "--recorder-profile", "/seccomp"},
						VolumeMounts:             mount,
						SecurityContext:          securityContext(nil, &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}),
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
					Containers: []corev1.Container{{
						Name: RecorderContainer, Image: o.Image, ImagePullPolicy: corev1.PullIfNotPresent,
						Args: args,
						Env: []corev1.EnvVar{fieldEnv("NODE_NAME", "spec.nodeName"), fieldEnv("POD_NAME", "metadata.name"),
							fieldEnv("POD_NAMESPACE", "metadata.namespace")},
						SecurityContext: securityContext(o.Caps, &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost,
							LocalhostProfile: ptr.To(o.ProfileName)}),
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
						},
					}},
				},
			},
		},
	}
}

// securityContext drops every capability but add, as root (the recorder
// reads other users' /proc entries) on a read-only root file system.
func securityContext(add []string, prof *corev1.SeccompProfile) *corev1.SecurityContext {
	caps := &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	for _, c := range add {
		caps.Add = append(caps.Add, corev1.Capability(c))
	}
	return &corev1.SecurityContext{
		Capabilities: caps, RunAsUser: ptr.To[int64](0), RunAsNonRoot: ptr.To(false),
		ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
		SeccompProfile: prof,
	}
}

func fieldEnv(name, field string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: field}}}
}

// deadlineOf is a Job's activeDeadlineSeconds as a duration (0: none).
func deadlineOf(j *batchv1.Job) time.Duration {
	if j.Spec.ActiveDeadlineSeconds == nil {
		return 0
	}
	return time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second
}
