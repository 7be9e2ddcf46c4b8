ts + toIntervalDay(30) TO VOLUME 'cold', ts + toIntervalDay(400) DELETE WHERE NOT (tenant_id IN ('umbrella', 'wayne'))
