#!/usr/bin/env bash
# Sourced by every script that runs podman (and by the container tests' set-up, through its output): points
# podman at Plugboard's own containers.conf. Root here lacks CAP_SYS_RESOURCE, so a container may not raise an
# rlimit above the hard limit of the process that starts it; podman's defaults (nofile 1048576 and an nproc above
# conmon's own 32768) make every `runc create` fail with "error setting rlimits for ready process ... operation not
# permitted". The defaults below are the machine's own hard limits, so they never need raising.
# Usage: source scripts/podman-env.sh  (exports CONTAINERS_CONF)
_pb_cache="${PLUGBOARD_CACHE:-$HOME/.cache/plugboard}"
mkdir -p "$_pb_cache/podman"
_pb_nofile="$(ulimit -Hn)"; [ "$_pb_nofile" = unlimited ] && _pb_nofile=1048576
_pb_nproc="$(ulimit -Hu)"; { [ "$_pb_nproc" = unlimited ] || [ "$_pb_nproc" -gt 32768 ]; } && _pb_nproc=32768
cat >"$_pb_cache/podman/containers.conf.$$" <<CONF
[containers]
default_ulimits = ["nofile=$_pb_nofile:$_pb_nofile", "nproc=$_pb_nproc:$_pb_nproc"]
CONF
mv "$_pb_cache/podman/containers.conf.$$" "$_pb_cache/podman/containers.conf"
export CONTAINERS_CONF="$_pb_cache/podman/containers.conf"
unset _pb_cache _pb_nofile _pb_nproc
