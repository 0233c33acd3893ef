package routing

import (
	"bytes"
	"testing"

	nodev1 "k8s.io/api/node/v1"
	"sigs.k8s.io/yaml"
)

func TestRuntimeClassesRoundTrip(t *testing.T) {
	hs := []RuntimeHandler{
		{Name: "runc", Default: true},
		{Name: "kata", RuntimeClassName: "kata-qemu", Overhead: &Overhead{CPU: mustQ("250m"), Memory: mustQ("320Mi")},
			Scheduling: &nodev1.Scheduling{NodeSelector: map[string]string{"katacontainers.io/kata-runtime": "true"}}},
	}
	out, err := RuntimeClassesYAML(hs)
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(out, []byte("\n---\n"))
	if len(docs) != 2 {
		t.Fatalf("got %d documents:\n%s", len(docs), out)
	}
	if bytes.Contains(out, []byte("creationTimestamp")) {
		t.Errorf("output carries creationTimestamp:\n%s", out)
	}
	var got []nodev1.RuntimeClass
	for _, d := range docs {
		var rc nodev1.RuntimeClass
		if err := yaml.UnmarshalStrict(d, &rc); err != nil {
			t.Fatalf("document does not decode strictly as a node/v1 RuntimeClass: %v\n%s", err, d)
		}
		got = append(got, rc)
	}
	if got[0].APIVersion != "node.k8s.io/v1" || got[0].Kind != "RuntimeClass" || got[0].Name != "runc" || got[0].Handler != "runc" || got[0].Overhead != nil {
		t.Errorf("runc class: %+v", got[0])
	}
	k := got[1]
	if k.Name != "kata-qemu" || k.Handler != "kata" {
		t.Errorf("kata class name/handler: %s/%s", k.Name, k.Handler)
	}
	if k.Overhead == nil || k.Overhead.PodFixed.Cpu().String() != "250m" || k.Overhead.PodFixed.Memory().String() != "320Mi" {
		t.Errorf("kata overhead: %+v", k.Overhead)
	}
	if k.Scheduling == nil || k.Scheduling.NodeSelector["katacontainers.io/kata-runtime"] != "true" {
		t.Errorf("kata scheduling: %+v", k.Scheduling)
	}
}
