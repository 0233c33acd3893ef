# shellcheck shell=bash
# images.sh: every image the bed needs, built offline from local binaries and pushed to the
# bed's registries with crane. Sourced by bed.sh.
#
#   $REGISTRY/pause:3.9                 static C pause (containerd's sandbox_image)
#   $REGISTRY/busybox:1.35              Debian's dynamic busybox + libc
#   $REGISTRY/e2e-test-images/...       stand-ins for critest's registry.k8s.io images
#   $REGISTRY/k8s-staging-cri-tools/... stand-ins for critest's gcr.io images
#   $AUTH_REGISTRY/private/busybox:1.35 busybox behind htpasswd ($AUTH_USER/$AUTH_PASS)

IMAGES_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../images" && pwd)
BUSYBOX_IMAGE=$REGISTRY/busybox:1.35
PRIVATE_IMAGE=$AUTH_REGISTRY/private/busybox:1.35
# a private image whose ID no public image shares (a label of its own), for image access
PRIVATE_APP_IMAGE=$AUTH_REGISTRY/private/app:1
# the last image pushed: when it is there with the current stamp, everything is
LAST_IMAGE=$REGISTRY/k8s-staging-cri-tools/test-image-predefined-group:latest

images_stamp() {
  cat "${BASH_SOURCE[0]}" "$IMAGES_SRC"/* /bin/busybox | sha256sum | cut -c1-16
}

bed_images() {
  require_root
  curl -sf "http://$REGISTRY/v2/" >/dev/null || die "registry $REGISTRY is not up: run '$0 up'"
  local work=$BED_DIR/images stamp
  stamp=$(images_stamp)
  if [ "$(cat "$work/pushed.stamp" 2>/dev/null)" = "$stamp" ] &&
    crane manifest --insecure "$LAST_IMAGE" >/dev/null 2>&1 &&
    crane manifest --insecure "$PRIVATE_IMAGE" >/dev/null 2>&1; then
    log "images: already pushed (stamp $stamp)"
    return
  fi
  log "images: build + push"
  rm -rf "$work" && mkdir -p "$work"
  # crane is chatty on stderr: keep its output in a log and show the tail only on failure
  (
    cd "$work" || exit
    exec 2>"$work/build.log"
    # shellcheck disable=SC2154 # rc is assigned inside the trap
    trap 'rc=$?; [ $rc = 0 ] || { echo "image build failed (log $work/build.log):"; tail -20 "$work/build.log"; } >&3' EXIT
    build_images
  ) 3>&2
  echo "$stamp" >"$work/pushed.stamp"
  crane catalog --insecure "$REGISTRY" | sed 's/^/  /'
}

TARFLAGS=(--numeric-owner --owner=0 --group=0 --sort=name --mtime=2024-01-01)
mktar() { tar "${TARFLAGS[@]}" -C "$1" -cf "$2" .; }
cstatic() { gcc -Os -static -o "$2" "$IMAGES_SRC/$1" && strip "$2"; }

# derive REF DIR [crane mutate args...]: busybox plus one layer made from DIR
derive() {
  local ref=$1 dir=$2 t
  shift 2
  t=$(mktemp -p . --suffix .tar)
  mktar "$dir" "$t"
  crane append --insecure -b "$BUSYBOX_IMAGE" -f "$t" -t "$ref" >/dev/null
  if [ $# -gt 0 ]; then crane mutate --insecure "$ref" "$@" -t "$ref" >/dev/null; fi
  rm -f "$t"
  echo "  pushed $ref"
}

# onefile REF NAME: busybox plus a file /NAME containing NAME (images that differ only by content)
onefile() {
  rm -rf one && mkdir one && echo "$2" >"one/$2"
  derive "$1" one
  rm -rf one
}

build_images() {
  local R=$REGISTRY
  # --- pause ---
  mkdir -p pause-rootfs
  cstatic pause.c pause-rootfs/pause
  mktar pause-rootfs pause.tar
  crane append --insecure -f pause.tar -t "$R/pause:base" >/dev/null
  crane mutate --insecure "$R/pause:base" --set-platform linux/amd64 --entrypoint /pause \
    --user 65535:65535 -t "$R/pause:3.9" >/dev/null
  echo "  pushed $R/pause:3.9"

  # --- busybox: Debian's *dynamic* busybox (busybox-static has SH_STANDALONE, which runs `sh -c ls`
  # in-process and breaks critest's MaskedPaths(/bin/ls) check). Applets are hardlinks, like the
  # upstream image, so masking /bin/ls does not mask busybox. ---
  local rootfs=busybox-rootfs lib a
  mkdir -p $rootfs/{bin,etc,tmp,root,home,var/www,var/run,proc,sys,dev,usr/bin,usr/sbin,sbin}
  chmod 1777 $rootfs/tmp
  cp /bin/busybox $rootfs/bin/busybox
  for lib in $(ldd /bin/busybox | grep -o '/[^ ]*'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  for a in $($rootfs/bin/busybox --list); do
    [ "$a" = busybox ] || ln -f $rootfs/bin/busybox $rootfs/bin/"$a"
  done
  install -m 755 "$IMAGES_SRC/pgrep" "$IMAGES_SRC/ipcs" $rootfs/bin/
  install -m 644 "$IMAGES_SRC/passwd" "$IMAGES_SRC/group" $rootfs/etc/
  mktar $rootfs busybox.tar
  crane append --insecure -f busybox.tar -t "$R/busybox:base" >/dev/null
  crane mutate --insecure "$R/busybox:base" --set-platform linux/amd64 --cmd sh \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -t "$BUSYBOX_IMAGE" >/dev/null
  echo "  pushed $BUSYBOX_IMAGE"

  # --- critest's images, under the repository paths of the upstream ones (see certs.d mirrors) ---
  crane copy --insecure "$BUSYBOX_IMAGE" "$R/e2e-test-images/busybox:1.29-2" >/dev/null
  mkdir -p web/usr/share/nginx/html web/usr/sbin web/var/run
  echo '<html><body>Welcome to nginx!</body></html>' >web/usr/share/nginx/html/index.html
  cstatic nginx.c web/usr/sbin/nginx
  derive "$R/e2e-test-images/nginx:1.14-2" web --cmd /usr/sbin/nginx --env NGINX_PORT=80
  derive "$R/k8s-staging-cri-tools/hostnet-nginx-amd64:latest" web --cmd /usr/sbin/nginx --env NGINX_PORT=12003
  # httpd: the multi-container test wants "httpd" in its log and a page on :80
  derive "$R/e2e-test-images/httpd:2.4.39-4" web \
    --cmd 'sh,-c,echo httpd starting; exec httpd -f -v -p 80 -h /usr/share/nginx/html'
  mkdir -p nnp/usr/local/bin
  cstatic nnp.c nnp/usr/local/bin/nnp
  chmod 4755 nnp/usr/local/bin/nnp
  derive "$R/e2e-test-images/nonewprivs:1.3" nnp --entrypoint /usr/local/bin/nnp --user 1000
  local img tag
  for img in test-image-1 test-image-2 test-image-3 test-image-latest test-image-digest; do
    onefile "$R/k8s-staging-cri-tools/$img:latest" "$img"
  done
  onefile "$R/k8s-staging-cri-tools/test-image-tags:1" same-image
  crane tag --insecure "$R/k8s-staging-cri-tools/test-image-tags:1" 2
  crane tag --insecure "$R/k8s-staging-cri-tools/test-image-tags:1" 3
  for tag in test all; do onefile "$R/k8s-staging-cri-tools/test-image-tag:$tag" "$tag"; done
  crane mutate --insecure "$BUSYBOX_IMAGE" --user 1002 -t "$R/k8s-staging-cri-tools/test-image-user-uid:latest" >/dev/null
  crane mutate --insecure "$BUSYBOX_IMAGE" --user www-data -t "$R/k8s-staging-cri-tools/test-image-user-username:latest" >/dev/null
  crane mutate --insecure "$BUSYBOX_IMAGE" --user 1003:1004 -t "$R/k8s-staging-cri-tools/test-image-user-uid-group:latest" >/dev/null
  crane mutate --insecure "$BUSYBOX_IMAGE" --user www-data:1004 -t "$R/k8s-staging-cri-tools/test-image-user-username-group:latest" >/dev/null
  mkdir -p pg/etc pg/home/default-user
  cp $rootfs/etc/passwd $rootfs/etc/group pg/etc/
  echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' >>pg/etc/passwd
  echo 'default-user:x:1000:' >>pg/etc/group
  echo 'group-defined-in-image:x:50000:default-user' >>pg/etc/group
  derive "$LAST_IMAGE" pg --user 1000

  # --- a private copy behind htpasswd ---
  crane auth login "$AUTH_REGISTRY" -u "$AUTH_USER" -p "$AUTH_PASS"
  crane copy --insecure "$BUSYBOX_IMAGE" "$PRIVATE_IMAGE" >/dev/null
  crane mutate --insecure "$BUSYBOX_IMAGE" --label io.crishim.test=private-app -t "$PRIVATE_APP_IMAGE" >/dev/null
  echo "  pushed $PRIVATE_IMAGE and $PRIVATE_APP_IMAGE"
}
