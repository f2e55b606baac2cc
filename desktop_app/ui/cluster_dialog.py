"""Settings › Engine › Use the engine on a cluster…: this machine, a local Ray cluster, or an address."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.cluster import ClusterSetting, load_cluster_setting, save_cluster_setting
from engine.farm import RAY_MISSING_HINT, ray_available


class ClusterDialog(QDialog):
    """Where the window's engine runs. The choice applies from the next start."""

    def __init__(self, data_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ClusterDialog")
        self.setWindowTitle("Engine")
        self._data_dir = Path(data_dir)
        current = load_cluster_setting(self._data_dir)
        self.local_radio = QRadioButton("This machine (default)")
        self.cluster_radio = QRadioButton("Use the engine on a local Ray cluster")
        self.address_radio = QRadioButton("Use the engine on the cluster at")
        self.address_edit = QLineEdit(current.address)
        self.address_edit.setPlaceholderText("head-node:6379")
        group = QButtonGroup(self)
        for b in (self.local_radio, self.cluster_radio, self.address_radio):
            group.addButton(b)
        (self.address_radio if current.enabled and current.address else
         self.cluster_radio if current.enabled else self.local_radio).setChecked(True)
        available = ray_available()
        for w in (self.cluster_radio, self.address_radio, self.address_edit):
            w.setVisible(available)
        self.hint_label = QLabel(RAY_MISSING_HINT if not available else
                                 "Images are still saved here. The change applies when Easel next starts.")
        self.hint_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.address_radio)
        row.addWidget(self.address_edit, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.accepted.connect(self.save)
        layout = QVBoxLayout(self)
        for w in (self.local_radio, self.cluster_radio):
            layout.addWidget(w)
        layout.addLayout(row)
        layout.addWidget(self.hint_label)
        layout.addWidget(buttons)

    def setting(self) -> ClusterSetting:
        if self.address_radio.isChecked() and self.address_edit.text().strip():
            return ClusterSetting(True, self.address_edit.text().strip())
        return ClusterSetting(self.cluster_radio.isChecked() or self.address_radio.isChecked(), "")

    def save(self) -> None:
        save_cluster_setting(self._data_dir, self.setting())
