#!/bin/sh
# Remove Easel installed by install.sh: the app, its launcher, menu entry and icon.
# Your settings, models and images (in ~/.local/share/Easel) are kept.
set -eu

dest=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
if [ ! -x "$dest/app/easel" ] || [ ! -f "$dest/installed-files" ]; then
  echo "uninstall.sh: $dest is not an Easel install" >&2
  exit 1
fi

while IFS= read -r file; do
  case "$file" in
    */bin/easel) if [ -L "$file" ] && [ "$(readlink "$file")" = "$dest/app/easel" ]; then rm -f "$file"; fi ;;
    "") ;;
    *) rm -f "$file" ;;
  esac
done < "$dest/installed-files"
rm -rf "$dest"

data_home=${XDG_DATA_HOME:-$HOME/.local/share}
if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$data_home/applications" 2>/dev/null || :; fi
echo "Easel is uninstalled. Your settings, models and images are still in $data_home/Easel (delete that folder to remove them too)."
