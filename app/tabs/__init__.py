"""The page's tabs and panels, one module each. Each has `build(app, w)`, which lays out its components on the
page's `Widgets` namespace `w`, and most have `wire(app, w)`, which connects its events; `app.ui.App.build` calls
every `build`, then every `wire` (a change on one tab refreshes outputs on others, so events are wired once every
component exists)."""
