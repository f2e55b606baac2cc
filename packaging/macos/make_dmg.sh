#!/bin/bash
# macOS: pack dist/Easel.app (built by `python packaging/build.py` on a Mac) into a drag-to-install
# disk image: dist/easel-<version>-macos-<arch>.dmg. Needs only the tools macOS ships (hdiutil,
# codesign). Run from anywhere:  bash packaging/macos/make_dmg.sh
#
# Signing: without SIGN_IDENTITY the app is signed ad hoc, which runs on the Mac that built it;
# other Macs need a "Developer ID Application" identity (SIGN_IDENTITY="Developer ID Application: ...")
# and notarization (xcrun notarytool submit the .dmg --wait; xcrun stapler staple the .dmg).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
app="$root/dist/Easel.app"
[ -d "$app" ] || { echo "make_dmg.sh: $app is missing: run python packaging/build.py first" >&2; exit 1; }
version="$(/usr/libexec/PlistBuddy -c 'Print :CFBundleShortVersionString' "$app/Contents/Info.plist")"
arch="$(uname -m)"
dmg="$root/dist/easel-$version-macos-$arch.dmg"

codesign --force --deep --options runtime --timestamp=none --sign "${SIGN_IDENTITY:--}" "$app"
codesign --verify --deep --strict "$app"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -volname "Easel $version" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"
echo "disk image: $dmg"
