package service

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBuildInfoIsExported(t *testing.T) {
	reg := prometheus.NewRegistry()
	registerBuildInfo(reg, "crm-sync")
	registerBuildInfo(reg, "crm-sync") // a second supervisor on the registry
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lr_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("lr_build_info: %v", mf.GetMetric())
		}
		labels := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["service"] != "crm-sync" || labels["revision"] == "" || labels["go_version"] == "" {
			t.Fatalf("labels %v", labels)
		}
		return
	}
	t.Fatal("no lr_build_info")
}
