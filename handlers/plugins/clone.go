package plugins

import (
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func protoClone[T proto.Message](m T) T { return proto.Clone(m).(T) }

func cloneCreate(r *runtimeapi.CreateContainerRequest) *runtimeapi.CreateContainerRequest {
	return protoClone(r)
}
