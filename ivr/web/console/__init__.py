"""The browser console: operators, supervisors and admins (server-rendered pages + small JS)."""
