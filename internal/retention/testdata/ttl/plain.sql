ts + toIntervalDay(30) TO VOLUME 'cold', ts + toIntervalDay(400) DELETE
