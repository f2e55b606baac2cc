#!/bin/sh
# Install Easel for the current user: no root, no Python. Puts the app in ~/.local/lib/easel,
# a launcher in ~/.local/bin, an entry in the applications menu and its icon.
# Run it again to upgrade. Uninstall with ~/.local/lib/easel/uninstall.sh.
# Your settings, models and images (in ~/.local/share/Easel) are never touched.
set -eu

src=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
data_home=${XDG_DATA_HOME:-$HOME/.local/share}
dest=${EASEL_INSTALL_DIR:-$HOME/.local/lib/easel}
bin_dir=${EASEL_BIN_DIR:-$HOME/.local/bin}
name=easel

fail() { echo "install.sh: $*" >&2; exit 1; }
[ -x "$src/app/$name" ] || fail "$src/app/$name is missing: unpack the whole archive, then run install.sh from it"
case "$dest" in *[\"\`\$\\]*) fail "the folder $dest has a quote, \$ or backslash in its name: set EASEL_INSTALL_DIR to another folder" ;; esac
version=$(cat "$src/VERSION")

mkdir -p "$dest" "$bin_dir" "$data_home/applications" \
  "$data_home/icons/hicolor/scalable/apps" "$data_home/icons/hicolor/256x256/apps" \
  || fail "cannot create folders under $dest, $bin_dir or $data_home"

# Copy first, swap after: an interrupted install never leaves a half-copied app in place.
staging="$dest/.app.new.$$"
trap 'rm -rf "$staging"' EXIT
trap 'exit 130' INT TERM
echo "copying Easel $version to $dest ..."
cp -R "$src/app" "$staging" || fail "copying the app failed (is the disk full?); the previous install, if any, is unchanged"
rm -rf "$dest/.app.old"
if [ -d "$dest/app" ]; then mv "$dest/app" "$dest/.app.old"; fi
mv "$staging" "$dest/app"
rm -rf "$dest/.app.old"
trap - EXIT INT TERM

cp "$src/uninstall.sh" "$dest/uninstall.sh" && chmod +x "$dest/uninstall.sh"
printf '%s\n' "$version" > "$dest/VERSION"

exe="$dest/app/$name"
ln -sf "$exe" "$bin_dir/$name"
cp "$src/share/$name.svg" "$data_home/icons/hicolor/scalable/apps/$name.svg"
cp "$src/share/$name.png" "$data_home/icons/hicolor/256x256/apps/$name.png"
desktop="$data_home/applications/$name.desktop"
while IFS= read -r line; do
  case "$line" in
    Exec=*) printf 'Exec="%s"\n' "$exe" ;;
    TryExec=*) printf 'TryExec=%s\n' "$exe" ;;
    *) printf '%s\n' "$line" ;;
  esac
done < "$src/share/$name.desktop" > "$desktop"
chmod +x "$desktop"

# What uninstall.sh removes besides $dest.
printf '%s\n' "$bin_dir/$name" "$desktop" \
  "$data_home/icons/hicolor/scalable/apps/$name.svg" "$data_home/icons/hicolor/256x256/apps/$name.png" \
  > "$dest/installed-files"

# Desktops that cache menu entries and icons pick the new ones up at once (best effort).
if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$data_home/applications" 2>/dev/null || :; fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then gtk-update-icon-cache -q -t "$data_home/icons/hicolor" 2>/dev/null || :; fi

echo "Easel $version is installed. Start it from the applications menu, or run: $bin_dir/$name"
case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "($bin_dir is not on your PATH: add it to run 'easel' by name)" ;; esac
echo "To uninstall: $dest/uninstall.sh"
