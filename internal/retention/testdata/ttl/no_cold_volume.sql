ts + toIntervalDay(400) DELETE WHERE tenant_id NOT IN ('acme-bank', 'globex', 'initech'), ts + toIntervalDay(3653) DELETE WHERE tenant_id IN ('acme-bank', 'initech')
