"""The one home of the helpers tests share: processes, waiting, loaders, plugins and stand-ins."""
