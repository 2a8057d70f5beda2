"""Old name of ``worker.http_server``; goes when the last importer moves."""

from worker.http_server import Health as Health
