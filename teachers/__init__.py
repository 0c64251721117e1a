"""Teachers: a timm model by name, loaded from local weights or trained once and cached."""

from __future__ import annotations

from teachers.spec import TeacherConfig

__all__ = ["TeacherConfig"]
