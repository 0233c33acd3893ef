package access

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultResyncInterval is how often the record is pruned of images the
// runtime no longer has: image garbage collection is slow, and an entry of
// a removed image only costs a few bytes until then.
const DefaultResyncInterval = 10 * time.Minute

// resyncLoop prunes the record every interval until ctx ends.
func (a *Access) resyncLoop(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultResyncInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.Resync(ctx); err != nil && ctx.Err() == nil {
				a.log.WithError(err).Warn("image access: could not list the runtime's images; the record is pruned at the next resync")
			}
		}
	}
}

// Resync lists the runtime's images and drops the record's entries of
// images it no longer has.
func (a *Access) Resync(ctx context.Context) error {
	if a.images == nil {
		return nil
	}
	// Entries recorded after this instant are kept whatever the list says:
	// their pull may have finished after the runtime answered.
	listedAt := time.Now()
	resp, err := a.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(resp.GetImages()))
	for _, img := range resp.GetImages() {
		present[imageKey(img.GetId())] = true
	}
	removed, err := a.store.Prune(listedAt, func(id string) bool { return present[id] })
	if err != nil {
		a.metrics.failed("write")
		return err
	}
	if removed > 0 {
		a.log.WithField("removed", removed).Debug("image access: pruned images the runtime no longer has")
	}
	return nil
}
