<?xml version="1.0" encoding="UTF-8"?>
<!--
  icecast-balancer: per-mount load for the balancer's poll job.

  Copy this file into the Icecast webroot (Debian: /usr/share/icecast2/web/)
  and check it with: curl http://RELAY:8000/load.xsl

  Output, one element per mount:
    <load listener_connections="4711"><mount name="/live.mp3" listeners="12" max="100">88</mount></load>
  listener_connections is the relay's cumulative count of accepted
  listeners: the balancer compares it between polls to tell which of its
  redirects have arrived (so a slot is counted once).
  The text is the number of free slots (what older balancers read); the
  attributes carry the raw numbers. A mount without max-listeners has
  max="unlimited" and the text "unlimited".
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="xml" media-type="text/xml" encoding="UTF-8" indent="no"/>
<xsl:template match="/icestats">
<load>
<xsl:if test="string(number(listener_connections)) != 'NaN'">
  <xsl:attribute name="listener_connections"><xsl:value-of select="number(listener_connections)"/></xsl:attribute>
</xsl:if>
<xsl:for-each select="source">
<xsl:variable name="listeners">
  <xsl:choose>
    <xsl:when test="string(number(listeners)) != 'NaN'"><xsl:value-of select="number(listeners)"/></xsl:when>
    <xsl:otherwise>0</xsl:otherwise>
  </xsl:choose>
</xsl:variable>
<mount name="{@mount}" listeners="{$listeners}">
  <xsl:choose>
    <xsl:when test="string(number(max_listeners)) != 'NaN'">
      <xsl:attribute name="max"><xsl:value-of select="number(max_listeners)"/></xsl:attribute>
      <xsl:value-of select="number(max_listeners) - $listeners"/>
    </xsl:when>
    <xsl:otherwise>
      <xsl:attribute name="max">unlimited</xsl:attribute>
      <xsl:text>unlimited</xsl:text>
    </xsl:otherwise>
  </xsl:choose>
</mount>
</xsl:for-each>
</load>
</xsl:template>
</xsl:stylesheet>
