package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// SchemeGroupVersion is the policy's group and version.
var SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// AddToScheme registers the policy types with a scheme, for client-go.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &KubeArmorSeccompPolicy{}, &KubeArmorSeccompPolicyList{},
		&KubeArmorSeccompNodeStatus{}, &KubeArmorSeccompNodeStatusList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
