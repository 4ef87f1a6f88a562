SUMMARY = "Camera daemon: V4L2 capture, H.264 encode, RTSP publish, MQTT telemetry"
DESCRIPTION = "edgecam captures V4L2 cameras, encodes H.264 with the board's hardware \
encoder when it has one and a software encoder when it does not, publishes each stream \
to an RTSP server with ANNOUNCE/RECORD and reports health over MQTT. It runs as a \
systemd Type=notify service with a watchdog."
SECTION = "multimedia"
# The repository has no licence text files yet: the checksum covers Cargo.toml's
# `license = "MIT OR Apache-2.0"` line (line 7). Point it at the licence files once they exist.
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=7;endline=7;md5=86b31c7756a1a7962f28b62856ed4f05"

# Where the source comes from. Set in local.conf or a bbappend, either git:
#   EDGECAM_SRC_URI = "git://HOST/PATH/edgecam.git;protocol=https;branch=main"
#   SRCREV:pn-edgecam = "<full commit id of the release>"
# or a release tarball that unpacks to edgecam-${PV}/ (docs/yocto.md says how to make it):
#   EDGECAM_SRC_URI = "https://HOST/PATH/edgecam-${PV}.tar.gz"
#   SRC_URI[sha256sum] = "<its sha256>"
# edgecam-crates.inc must come from the same commit's Cargo.lock. Setting SRC_URI itself in
# a bbappend would drop the crate lines the .inc adds to it.
EDGECAM_SRC_URI ??= ""
SRC_URI = "${EDGECAM_SRC_URI}"
SRCREV ??= ""

python () {
    if bb.data.inherits_class('externalsrc', d):
        return
    uri = d.getVar('EDGECAM_SRC_URI') or ''
    if not uri:
        raise bb.parse.SkipRecipe("set EDGECAM_SRC_URI (git with SRCREV, or a release tarball): see docs/yocto.md")
    if uri.startswith('git://') and (d.getVar('SRCREV') or 'INVALID') == 'INVALID':
        raise bb.parse.SkipRecipe("set SRCREV:pn-edgecam to the commit to build: see docs/yocto.md")
}

require edgecam-crates.inc

inherit cargo cargo-update-recipe-crates systemd pkgconfig

# Libraries linked at build time (gstreamer-rs: core, base, app, video, rtsp, sdp, net,
# rtsp-server). Not gstreamer1.0-plugins-bad: no crate links its libraries; its plugins are
# run-time dependencies below.
DEPENDS = "gstreamer1.0 gstreamer1.0-plugins-base gstreamer1.0-rtsp-server"

# The v4l crate generates its bindings to linux/videodev2.h with bindgen, which loads
# libclang at build time and must parse the target's headers.
DEPENDS += "clang-native"
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET}"

# Only the daemon: edgecam-upstream is the test suite's RTSP receiver.
CARGO_BUILD_FLAGS += "--bin edgecam"

do_install:append() {
    rm -f ${D}${bindir}/edgecam-upstream

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/edgecam.service ${D}${systemd_system_unitdir}/

    install -d ${D}${sysconfdir}/edgecam
    install -m 0644 ${S}/config/edgecam.toml ${D}${sysconfdir}/edgecam/edgecam.toml

    install -d ${D}${docdir}/${BPN}
    install -m 0644 ${S}/README.md ${S}/systemd/jetson.conf ${S}/systemd/config-set.conf \
        ${D}${docdir}/${BPN}/
}

# On Jetson the device allow-list also needs NVENC's nodes: the drop-in is active there.
do_install:append:tegra() {
    install -d ${D}${systemd_system_unitdir}/edgecam.service.d
    install -m 0644 ${S}/systemd/jetson.conf ${D}${systemd_system_unitdir}/edgecam.service.d/
}

SYSTEMD_SERVICE:${PN} = "edgecam.service"
# Images start edgecam at boot; bbappend edgecam.toml with the device's real configuration.
SYSTEMD_AUTO_ENABLE:${PN} ?= "enable"

CONFFILES:${PN} = "${sysconfdir}/edgecam/edgecam.toml"
FILES:${PN} += "${systemd_system_unitdir}"

# GStreamer plugins edgecam loads by name at run time (shared libraries come by shlibdeps):
#   base: appsrc/appsink, videoconvert (videoconvertscale since 1.22), videotestsrc
#   good: v4l2src and the V4L2 M2M encoder v4l2h264enc (Raspberry Pi 4), rtph264pay,
#         rtpbin, udpsink (UDP transport), jpegenc (snapshots)
#   bad: h264parse; rtsp-server: rtspclientsink
RDEPENDS:${PN} = " \
    gstreamer1.0-plugins-base-app \
    gstreamer1.0-plugins-base-videoconvertscale \
    gstreamer1.0-plugins-base-videotestsrc \
    gstreamer1.0-plugins-good-video4linux2 \
    gstreamer1.0-plugins-good-rtp \
    gstreamer1.0-plugins-good-rtpmanager \
    gstreamer1.0-plugins-good-udp \
    gstreamer1.0-plugins-good-jpeg \
    gstreamer1.0-plugins-bad-videoparsersbad \
    gstreamer1.0-rtsp-server-rtspclientsink \
    ${EDGECAM_SOFTWARE_ENCODER_PACKAGE} \
"

# The software H.264 encoder for boards without a hardware one (Pi 5, Orin Nano, x86
# without VA-API) and as fallback:
#   "x264"     gstreamer1.0-plugins-ugly-x264 (OE-core). Needs
#              PACKAGECONFIG:append:pn-gstreamer1.0-plugins-ugly = " x264" and
#              LICENSE_FLAGS_ACCEPTED += "commercial_gstreamer1.0-plugins-ugly commercial_x264"
#   "openh264" gstreamer1.0-plugins-bad-openh264. Needs meta-multimedia (meta-openembedded)
#              and PACKAGECONFIG:append:pn-gstreamer1.0-plugins-bad = " openh264"
#   ""         none: hardware encoders only (a board without one then has no stream)
EDGECAM_SOFTWARE_ENCODER ??= "x264"
EDGECAM_SOFTWARE_ENCODER_PACKAGE = "${@{'x264': 'gstreamer1.0-plugins-ugly-x264', 'openh264': 'gstreamer1.0-plugins-bad-openh264', '': ''}[d.getVar('EDGECAM_SOFTWARE_ENCODER') or '']}"

# Raspberry Pi 4 (meta-raspberrypi): v4l2h264enc is in the video4linux2 plugin, already
# listed; the kernel's bcm2835-codec driver provides /dev/video11.
RDEPENDS:${PN}:append:rpi = " gstreamer1.0-plugins-good-video4linux2"
# Jetson (meta-tegra): nvv4l2h264enc and nvvidconv.
RDEPENDS:${PN}:append:tegra = " gstreamer1.0-plugins-nvvideo4linux2 gstreamer1.0-plugins-nvvidconv"
