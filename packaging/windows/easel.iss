; Inno Setup 6.3+ script: a per-user Easel installer (no administrator rights) with a Start menu
; entry, an optional desktop icon and an uninstaller (Settings > Apps, or the Start menu).
;
; Build on Windows after `python packaging\build.py` (which runs this for you when ISCC.exe is
; found). By hand, from the repository root:
;   ISCC.exe /DAppVersion=0.1.0 /DAppGuid=8C0F6C52-3B7E-4B8A-9E5D-2F6A1E7B4C10 /DTorchVariant=cpu packaging\windows\easel.iss
; packaging\build.py passes the values from pyproject.toml; never change AppGuid between versions.

#ifndef AppVersion
  #error Pass /DAppVersion=... (packaging\build.py does)
#endif
#ifndef AppGuid
  #error Pass /DAppGuid=... without braces (packaging\build.py does)
#endif
#ifndef TorchVariant
  #define TorchVariant "cpu"
#endif
; Name and publisher come from pyproject.toml through packaging\build.py; these defaults match it.
#ifndef AppName
  #define AppName "Easel"
#endif
#ifndef AppPublisher
  #define AppPublisher "Easel contributors"
#endif
; The bundle's two executables (packaging\easel.spec): windowed Easel.exe, console easel-cli.exe.
#define AppExe AppName + ".exe"
; Paths relative to this script: the repository's dist\ and build\ folders.
#define BundleDir "..\..\dist\easel"
#define IconFile "..\..\build\icons\easel.ico"

[Setup]
AppId={{{#AppGuid}}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher={#AppPublisher}
VersionInfoVersion={#AppVersion}
; Per-user: installs into %LOCALAPPDATA%\Programs\Easel, no UAC prompt.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName} {#AppVersion}
SetupIconFile={#IconFile}
OutputDir=..\..\dist
OutputBaseFilename=easel-{#AppVersion}-windows-x64-{#TorchVariant}-setup
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
; The bundle is about 1 GB (more with CUDA): lzma2 at max takes long; "fast" keeps builds reasonable.
Compression=lzma2/fast
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole one-folder bundle. An upgrade first removes the old bundle's files (see [InstallDelete]).
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; Files of an older version that the new one no longer ships would otherwise stay and be imported.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Offline image studio"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

; Uninstall removes {app} only. Settings, models and images live in %LOCALAPPDATA%\Easel and are kept.
