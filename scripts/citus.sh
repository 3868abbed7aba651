#!/usr/bin/env bash
# Builds and installs the Citus extension from source when `citus.so` is missing from the
# PostgreSQL server's library directory, for local and CI clusters (production uses the Citus
# packages or the `citusdata/citus` image instead: README, "Running on Citus").
#
#   scripts/citus.sh            install Citus if missing (idempotent; quick when installed)
#   scripts/citus.sh --check    exit 0 when citus.so is installed, 1 otherwise
#   exit status 3: Citus is missing and there is no source to build it from
#
# The source is the vendored archive ($CITUS_SRC, default ../shared/vendor/citus next to the
# clone), else the tag's archive from GitHub, checked against the vendored archive's sha256; the
# build is cached outside the clone in
# ${XDG_CACHE_HOME:-$HOME/.cache}/tenantry/citus-VERSION-pgMINOR/ as a staged install (DESTDIR),
# so a warm machine copies files instead of compiling (about 3 minutes on 2 cores).
# The patches in scripts/citus-patches/ are applied on top (each says why); the cache key and the
# marker written next to the installed extension (citus.tenantry-build) name them, so an install
# this script made with other patches is rebuilt, while a Citus installed some other way (a
# package) is left alone.
# Build dependencies come from apt: the server headers pinned to the installed server's version
# (a citus.so built against newer headers may call functions the older server does not export).
set -euo pipefail

CITUS_VERSION=13.2.2
# sha256 of citus-13.2.2.tar.gz (the vendored archive; a download must match it).
CITUS_SHA256=dd2453caec20a830e5e63f1def5c5a98cb6f57ae510407cdcd800916fcdab430
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

die() { printf 'citus: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'citus: %s\n' "$*" >&2; }

# The server's bin directory, as scripts/services.sh finds it.
find_pg_bin() {
  local d
  for d in "${PG_BIN:-}" "$(pg_config --bindir 2>/dev/null || true)"; do
    if [ -n "$d" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_config" ]; then echo "$d"; return 0; fi
  done
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_config" ]; then echo "$d"; return 0; fi
  return 1
}

PGBIN=$(find_pg_bin) || die "no PostgreSQL server binaries (apt-get install postgresql)"
PG_CONFIG="$PGBIN/pg_config"
pkglibdir=$("$PG_CONFIG" --pkglibdir)

# e.g. 15.18: the cache is per server minor version, as the headers are, and per patch set.
pg_version=$("$PGBIN/postgres" --version | awk '{print $3}')
pg_major=${pg_version%%.*}
patches=("$here"/citus-patches/*.patch)
patch_id=$(cat "${patches[@]}" | sha256sum | cut -c1-8)
build_id="citus-$CITUS_VERSION-pg$pg_version-$patch_id"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tenantry/$build_id"
stage="$cache/stage"
marker="$("$PG_CONFIG" --sharedir)/extension/citus.tenantry-build"

installed() {
  [ -f "$pkglibdir/citus.so" ] || return 1
  # Ours, with the current patches; or not ours at all (a package): both count as installed.
  [ ! -f "$marker" ] || [ "$(cat "$marker")" = "$build_id" ]
}

if [ "${1:-}" = --check ]; then
  installed
  exit
fi
[ $# -eq 0 ] || die "usage: $0 [--check]"

if installed; then
  note "citus.so is installed in $pkglibdir"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "installing into $pkglibdir needs root or sudo"
  sudo=(sudo -n)
fi

if [ ! -f "$cache/.done" ]; then
  # The vendored source: $CITUS_SRC, else ../shared/vendor/citus next to the clone (or next to
  # its parent, or the workplace's /work/shared), whichever has the archive.
  src_dir="${CITUS_SRC:-$root/../shared/vendor/citus}"
  if [ -z "${CITUS_SRC:-}" ]; then
    for d in "$root/../shared/vendor/citus" "$root/../../shared/vendor/citus" /work/shared/vendor/citus; do
      if [ -f "$d/citus-$CITUS_VERSION.tar.gz" ]; then src_dir=$d; break; fi
    done
  fi
  archive="$src_dir/citus-$CITUS_VERSION.tar.gz"
  mkdir -p "$(dirname "$cache")"
  if [ ! -f "$archive" ]; then
    archive="$(dirname "$cache")/citus-$CITUS_VERSION.tar.gz"
    if [ ! -f "$archive" ]; then
      url="https://github.com/citusdata/citus/archive/refs/tags/v$CITUS_VERSION.tar.gz"
      note "no vendored source in $src_dir; downloading $url"
      # Exit status 3: no source to build from (the caller may skip the Citus tests).
      command -v curl >/dev/null 2>&1 || { note "curl is missing (or set CITUS_SRC to the vendored source's directory)"; exit 3; }
      curl -fsSL "$url" -o "$archive.part" || { rm -f "$archive.part"; note "could not download $url (set CITUS_SRC)"; exit 3; }
      mv "$archive.part" "$archive"
    fi
  fi
  echo "$CITUS_SHA256  $archive" | sha256sum -c --quiet - >/dev/null 2>&1 \
    || die "$archive does not have the sha256 of Citus $CITUS_VERSION's vendored source ($CITUS_SHA256); set CITUS_SRC to the vendored source's directory"

  # Build dependencies; the headers of exactly the installed server version when apt has them.
  deps=(build-essential libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev)
  server_pkg="postgresql-$pg_major"
  server_deb=$(dpkg-query -W -f='${Version}' "$server_pkg" 2>/dev/null || true)
  dev="postgresql-server-dev-$pg_major"
  if [ -n "$server_deb" ]; then dev="$dev=$server_deb"; fi
  missing=()
  for p in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ! -f "$("$PG_CONFIG" --includedir-server)/postgres.h" ]; then missing+=("$dev"); fi
  if [ ${#missing[@]} -gt 0 ]; then
    note "installing build dependencies: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  fi

  rm -rf "$cache"
  mkdir -p "$cache"
  note "building Citus $CITUS_VERSION for PostgreSQL $pg_version in $cache (about 3 minutes on 2 cores)"
  tar xzf "$archive" -C "$cache"
  build="$cache/citus-$CITUS_VERSION"
  # PostgreSQL 15.20 exports have_createdb_privilege(), which Citus 13.2.2 defines as a static
  # compatibility function; this patch (the vendored one, copied here) removes it when the
  # headers declare it.
  if grep -q have_createdb_privilege "$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h" 2>/dev/null; then
    note "applying pg15.20-have_createdb_privilege.patch"
    (cd "$build" && patch -p1 -s <"$here/citus-pg15.20-have_createdb_privilege.patch")
  fi
  for p in "${patches[@]}"; do
    note "applying $(basename "$p")"
    (cd "$build" && patch -p1 -s <"$p") || die "$p does not apply"
  done
  (
    cd "$build"
    ./configure PG_CONFIG="$PG_CONFIG" >"$cache/configure.log" 2>&1 \
      || { tail -n 30 "$cache/configure.log" >&2; exit 1; }
    make -j"$(nproc)" >"$cache/make.log" 2>&1 || { tail -n 30 "$cache/make.log" >&2; exit 1; }
    make install DESTDIR="$stage" >"$cache/install.log" 2>&1 || { tail -n 30 "$cache/install.log" >&2; exit 1; }
  ) || die "the Citus build failed (logs in $cache)"
  # Only the staged install is needed again; the object files are 300 MB.
  rm -rf "$build"
  touch "$cache/.done"
fi

note "installing Citus $CITUS_VERSION from $stage"
# --no-overwrite-dir: existing directories (/usr, ...) keep their owners and modes.
tar -C "$stage" -cf - . | "${sudo[@]}" tar -C / -xf - --no-overwrite-dir
echo "$build_id" | "${sudo[@]}" tee "$marker" >/dev/null
[ -f "$pkglibdir/citus.so" ] || die "citus.so is still missing from $pkglibdir after the install"
note "citus.so is installed in $pkglibdir"
