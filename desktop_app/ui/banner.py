"""A non-modal banner at the top of the window for errors and notices; "Details" shows the log excerpt."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QToolButton, QVBoxLayout, QWidget

from desktop_app.state.errors import ErrorReport, ErrorReporter


class ErrorBannerWidget(QWidget):
    def __init__(self, reporter: ErrorReporter, log_path: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ErrorBanner")
        self.setProperty("level", "error")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._log_path = log_path
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(self.message.textInteractionFlags() | self.message.textInteractionFlags().TextSelectableByMouse)
        self.count_label = QLabel()
        self.details_button = QToolButton()
        self.details_button.setText("Details")
        self.details_button.setCheckable(True)
        self.details_button.setToolTip("Show the log excerpt for this error" + (f" (the full log is {log_path})" if log_path else ""))
        self.close_button = QToolButton()
        self.close_button.setText("Dismiss")
        self.close_button.setToolTip("Hide this message")
        self.details: QPlainTextEdit | None = None  # made with the first report that has details

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.message, 1)
        top.addWidget(self.count_label)
        top.addWidget(self.details_button)
        top.addWidget(self.close_button)
        self._root = QVBoxLayout(self)
        self._root.setContentsMargins(10, 6, 10, 6)
        self._root.addLayout(top)
        self.hide()

        self._unseen = 0
        self.details_button.toggled.connect(self._on_details_button_toggled)
        self.close_button.clicked.connect(self.dismiss)
        reporter.error_reported.connect(self._on_reporter_error_reported)
        reporter.notice_posted.connect(self._on_reporter_notice_posted)
        reporter.notice_withdrawn.connect(self._on_reporter_notice_withdrawn)

    def _details_view(self) -> QPlainTextEdit:
        if self.details is None:
            self.details = QPlainTextEdit()
            self.details.setReadOnly(True)
            self.details.setMaximumHeight(180)
            self.details.setToolTip("The last lines of the log, newest at the bottom")
            self.details.setVisible(self.details_button.isChecked())
            self._root.addWidget(self.details)
        return self.details

    def _on_details_button_toggled(self, on: bool) -> None:
        if on or self.details is not None:
            self._details_view().setVisible(on)

    def _on_reporter_error_reported(self, report: ErrorReport) -> None:
        self._show("error", report.message, report.details)

    def _on_reporter_notice_posted(self, text: str) -> None:
        self._show("notice", text, "")

    def _on_reporter_notice_withdrawn(self, text: str) -> None:
        if self.isVisible() and self.property("level") == "notice" and self.message.text() == text:
            self.dismiss()

    def _show(self, level: str, message: str, details: str) -> None:
        self._unseen = self._unseen + 1 if self.isVisible() else 1
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.message.setText(message)
        self.count_label.setText(f"({self._unseen} messages)" if self._unseen > 1 else "")
        if details or self.details is not None:
            view = self._details_view()
            view.setPlainText(details)
            view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())
        self.details_button.setVisible(bool(details))
        if not details:
            self.details_button.setChecked(False)
        self.show()

    def dismiss(self) -> None:
        self.details_button.setChecked(False)
        self._unseen = 0
        self.hide()
