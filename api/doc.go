// Package api defines the KubeArmorSeccompPolicy (short name kscmp): its Go
// types, the CRD, parsing of policy files in the CRD form and in the flat form
// (every field at the top level, the shape in which the policy was first
// proposed; see flat.go), and validation.
//
// +kubebuilder:object:generate=true
// +groupName=security.kubearmor.com
// +versionName=v1
package api
