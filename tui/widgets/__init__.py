"""Widgets: display only. Attributes come down from screens; messages go up."""
